"""Torch-free records of a model's identity and preprocessing, stored with each library."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PreprocessSpec:
    """open_clip's eval preprocessing for one model (see open_clip.get_model_preprocess_cfg).

    The decode workers reproduce it without torch: resize (shortest side to `size`, `resize_mode`
    "shortest"), centre crop, RGB uint8; the encoder then applies mean/std.
    """

    size: tuple[int, int]  # (height, width) of the model input
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # bicubic | bilinear | nearest
    resize_mode: str = "shortest"  # shortest | longest | squash
    fill_color: int = 0

    @classmethod
    def from_open_clip(cls, cfg: dict) -> PreprocessSpec:
        size = cfg["size"]
        if isinstance(size, int):
            size = (size, size)
        return cls(
            size=(int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
            interpolation=str(cfg.get("interpolation") or "bicubic"),
            resize_mode=str(cfg.get("resize_mode") or "shortest"),
            fill_color=int(cfg.get("fill_color") or 0),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What a library was built with: enough to load the same model again and to refuse another."""

    name: str  # open_clip name, or "hf-hub:org/repo" / "local-dir:/abs/path"
    pretrained: (
        str  # tag, absolute checkpoint path, "none" (random weights) or "" for hf-hub/local-dir
    )
    dim: int
    preprocess: PreprocessSpec

    def label(self) -> str:
        """Human-readable identity, e.g. 'ViT-B-32 / laion2b_s34b_b79k'."""
        return f"{self.name} / {self.pretrained}" if self.pretrained else self.name

    def same_model(self, other: ModelSpec) -> bool:
        """True when vectors from `other` are comparable with ours."""
        return (self.name, self.pretrained, self.dim) == (other.name, other.pretrained, other.dim)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        data = json.loads(text)
        pre = data["preprocess"]
        return cls(
            name=data["name"],
            pretrained=data["pretrained"],
            dim=int(data["dim"]),
            preprocess=PreprocessSpec(
                size=tuple(pre["size"]),  # type: ignore[arg-type]
                mean=tuple(pre["mean"]),  # type: ignore[arg-type]
                std=tuple(pre["std"]),  # type: ignore[arg-type]
                interpolation=pre["interpolation"],
                resize_mode=pre["resize_mode"],
                fill_color=pre["fill_color"],
            ),
        )
