"""Explain a match: where in a photo the query's score comes from, as a heatmap.

Two methods (`METHODS`; the default chosen by benchmarks/explainbench.py). Patch occlusion: a
grey window (the model's mean colour) slides over the model's input, every occluded copy is
embedded in one batch, and each pixel's heat is the mean drop in cosine with the query over the
windows covering it. It needs nothing from the model but its image embedding, so it works for
any open_clip model (ViT or not). Grad-ECLIP (clip/gradeclip.py): one forward pass and one
backward pass through the last block, open_clip ViTs only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgsearch.errors import ImgsearchError

if TYPE_CHECKING:
    from imgsearch.encoder import Encoder

GRID = 7  # windows per side; a window is 2 / (GRID + 1) of the side, half-overlapping
METHODS = ("occlusion", "gradeclip")
DEFAULT_METHOD = "occlusion"


@dataclass(frozen=True)
class Explanation:
    pixels: npt.NDArray[np.uint8]  # (H, W, 3) the model's input (resized, centre-cropped)
    heat: npt.NDArray[np.float32]  # (H, W) occlusion: mean score drop when that pixel is hidden
    score: float  # cosine of the whole photo with the query
    method: str = "occlusion"  # which of METHODS made `heat`

    def peak(self) -> tuple[int, int]:
        """(x, y) of the hottest pixel, in model-input coordinates."""
        y, x = np.unravel_index(int(np.argmax(self.heat)), self.heat.shape)
        return int(x), int(y)


def occlusion(
    encoder: Encoder, pixels: npt.NDArray[np.uint8], query: npt.NDArray[np.float32]
) -> Explanation:
    """Heatmap of `query` (unit vector) over `pixels` (H, W, 3 model input) by occlusion."""
    h, w = pixels.shape[:2]
    grey = np.asarray(encoder.spec.preprocess.mean) * 255
    win_h, win_w = max(1, 2 * h // (GRID + 1)), max(1, 2 * w // (GRID + 1))
    ys = np.linspace(0, h - win_h, GRID).astype(int)
    xs = np.linspace(0, w - win_w, GRID).astype(int)
    batch = np.repeat(pixels[None], len(ys) * len(xs) + 1, axis=0)
    boxes = [(y, x) for y in ys for x in xs]
    for n, (y, x) in enumerate(boxes, 1):
        batch[n, y : y + win_h, x : x + win_w] = grey.astype(np.uint8)
    scores = np.concatenate(
        [encoder.embed_pixels(batch[i : i + 64]) @ query for i in range(0, len(batch), 64)]
    )
    heat = np.zeros((h, w), np.float64)
    cover = np.zeros((h, w), np.float64)
    for n, (y, x) in enumerate(boxes, 1):
        heat[y : y + win_h, x : x + win_w] += scores[0] - scores[n]
        cover[y : y + win_h, x : x + win_w] += 1
    heat = np.where(cover > 0, heat / np.maximum(cover, 1), 0.0)
    return Explanation(pixels, heat.astype(np.float32), float(scores[0]))


def explain_pixels(
    encoder: Encoder,
    pixels: npt.NDArray[np.uint8],
    query: npt.NDArray[np.float32],
    method: str = DEFAULT_METHOD,
) -> Explanation:
    """Heatmap of `query` over `pixels` (H, W, 3 model input) by one of METHODS."""
    if method == "occlusion":
        return occlusion(encoder, pixels, query)
    if method == "gradeclip":
        from imgsearch.clip.gradeclip import gradeclip_heat

        heat, score = gradeclip_heat(encoder, pixels, query)
        return Explanation(pixels, heat, score, "gradeclip")
    raise ImgsearchError(f"unknown explain method {method!r}: choose one of {', '.join(METHODS)}")


def decode_for(encoder: Encoder, path: str, max_pixels: int = 200_000_000) -> np.ndarray:
    from imgsearch.decode import DecodeFailed, decode

    result = decode(os.path.abspath(path), encoder.spec.preprocess, max_pixels=max_pixels)
    if isinstance(result, DecodeFailed):
        raise ImgsearchError(f"cannot explain {result.path}: {result.reason}")
    return result.pixels


def save_overlay(exp: Explanation, dest: Path, size: int = 448) -> Path:
    """The model's view of the photo with the heat in red over it, `size` px on its long side."""
    from PIL import Image

    heat = np.clip(exp.heat, 0, None)
    heat = heat / heat.max() if heat.max() > 0 else heat
    base = exp.pixels.astype(np.float32)
    red = np.zeros_like(base)
    red[..., 0] = 255
    alpha = 0.65 * heat[..., None]
    blend = (base * (1 - alpha) + red * alpha).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(blend, "RGB")
    scale = size / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    try:
        img.save(dest)
    except (OSError, ValueError) as exc:
        raise ImgsearchError(f"cannot write {dest}: {exc}") from exc
    return dest


def explain_path(
    searcher: object, path: str | os.PathLike[str], query: str, method: str | None = None
) -> Explanation:
    """Heatmap of text `query` over the photo at `path`, with a Searcher's model and prompts
    (what `Searcher.explain(path, query)` returns); `method` is one of METHODS."""
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ImgsearchError(
            f"unknown explain method {method!r}: choose one of {', '.join(METHODS)}"
        )
    absolute = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(absolute):
        raise ImgsearchError(f"{absolute}: no such file")
    encoder = searcher.encoder  # type: ignore[attr-defined]
    pixels = decode_for(encoder, absolute, searcher.settings.max_pixels)  # type: ignore[attr-defined]
    query_vector = searcher.embed_text(query)  # type: ignore[attr-defined]
    return explain_pixels(encoder, pixels, query_vector, method)
