"""Fidelity of the indexer's model input against open_clip's own preprocessing of the full image.

The indexer decodes JPEGs reduced (Image.draft) and reproduces open_clip's resize + centre crop
without torch. The reference here is open_clip.image_transform(is_train=False) applied to the
same file decoded at full size (and oriented, as the indexer does), mapped back to 0..255.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgsearch.modelspec import PreprocessSpec


@functools.cache
def clip_transform(spec: PreprocessSpec) -> Any:
    """open_clip's own eval preprocessing for `spec`: the reference the indexer must match."""
    import open_clip

    size = spec.size[0] if spec.size[0] == spec.size[1] else spec.size
    return open_clip.image_transform(
        size,
        is_train=False,
        mean=spec.mean,
        std=spec.std,
        resize_mode=spec.resize_mode,
        interpolation=spec.interpolation,
        fill_color=spec.fill_color,
    )


def reference_input(path: str, spec: PreprocessSpec, max_pixels: int) -> npt.NDArray[np.uint8]:
    """open_clip's eval transform of the full-size oriented image, as uint8 (H, W, 3)."""
    from imgsearch.decode import open_image

    image = open_image(path, max_pixels=max_pixels, draft_to=None)
    tensor = clip_transform(spec)(image).numpy()
    mean = np.asarray(spec.mean, dtype=np.float64)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float64)[:, None, None]
    pixels = (tensor.astype(np.float64) * std + mean) * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def file_psnr(path: str, spec: PreprocessSpec, max_pixels: int, draft: bool = True) -> float:
    """PSNR (dB) of imgsearch.decode.decode's pixels vs the reference; nan if it cannot decode."""
    from imgsearch.decode import DecodeFailed, decode, psnr

    got = decode(path, spec, max_pixels=max_pixels, draft=draft)
    if isinstance(got, DecodeFailed):
        return math.nan
    return psnr(got.pixels, reference_input(path, spec, max_pixels))


@dataclass(frozen=True)
class Fidelity:
    """PSNR over a set of files (decodable ones), with the worst file for inspection."""

    count: int
    min_db: float
    median_db: float
    worst: str


def corpus_psnr(
    paths: list[Path],
    spec: PreprocessSpec,
    max_pixels: int,
    *,
    draft: bool = True,
    workers: int | None = None,
) -> Fidelity:
    """PSNR of every file, in a process pool (full-size decodes of 12 MP files are slow)."""
    names = [str(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        values = list(
            pool.map(
                file_psnr,
                names,
                [spec] * len(names),
                [max_pixels] * len(names),
                [draft] * len(names),
                chunksize=4,
            )
        )
    pairs = [(v, n) for v, n in zip(values, names) if not math.isnan(v)]
    if not pairs:
        return Fidelity(0, math.nan, math.nan, "")
    finite = [min(v, 99.0) for v, _ in pairs]  # identical inputs are inf dB; cap for the median
    worst = min(pairs)
    return Fidelity(len(pairs), min(finite), float(np.median(finite)), worst[1])
