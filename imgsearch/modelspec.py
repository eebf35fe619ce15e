"""Torch-free records of a model's identity and preprocessing, stored with each library."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path


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


# ---- specs seen on this machine ----------------------------------------------------------------
# `imgsearch index` into a new library can start decoding while the model loads (~5 s on 2 cores)
# when it already knows the model's input geometry; the model's own spec is checked after loading.


def _seen_path() -> Path:
    from imgsearch.userdirs import user_dir

    return user_dir("cache") / "model-specs.json"


def remembered(name: str, pretrained: str) -> ModelSpec | None:
    """The spec this machine last loaded for (name, pretrained), if any (advisory only)."""
    try:
        seen = json.loads(_seen_path().read_text())
        return ModelSpec.from_json(seen[f"{name}\n{pretrained}"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(spec: ModelSpec) -> None:
    """Record a loaded model's spec; failures are ignored (it is a cache)."""
    path = _seen_path()
    try:
        seen = json.loads(path.read_text()) if path.is_file() else {}
        seen[f"{spec.name}\n{spec.pretrained}"] = spec.to_json()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(seen, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError):
        pass


RANDOM = "none"  # --pretrained none: random weights, for benchmarks and plumbing tests


def warn_if_random(name: str, pretrained: str) -> None:
    """`--pretrained none` says what it means wherever the model comes from (torch or export);
    logged as the encoder's, where it was logged before there was an export."""
    if pretrained == RANDOM:
        logging.getLogger("imgsearch.encoder").warning(
            "model %s uses random weights: search results are meaningless", name
        )
