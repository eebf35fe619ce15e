"""Pictures with two shapes and the box of each: ground truth for explain-a-match tests.

Built from shapes.draw_shape tiles (shapes.py itself is untouched: its source is part of the
tiny CLIP's cache key).
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from tests.support.shapes import CLASSES, draw_shape

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
Scene = tuple[Path, list[tuple[str, str, Box]]]


def two_shape_scene(seed: int, size: int = 64) -> tuple[Image.Image, list[tuple[str, str, Box]]]:
    """Two different-colour, different-shape tiles (size/2 each) in opposite quadrants."""
    rng = random.Random(seed)
    (c1, s1), (c2, s2) = rng.sample(CLASSES, 2)
    while c2 == c1 or s2 == s1:
        c2, s2 = rng.choice(CLASSES)
    half = size // 2
    canvas = Image.new("RGB", (size, size), (210, 210, 210))
    corners = [(0, 0), (half, half)] if rng.random() < 0.5 else [(half, 0), (0, half)]
    rng.shuffle(corners)
    out = []
    for (color, shape), (x, y) in zip(((c1, s1), (c2, s2)), corners):
        canvas.paste(draw_shape(color, shape, size=half, rng=rng), (x, y))
        out.append((color, shape, (x, y, x + half, y + half)))
    return canvas, out


def write_scenes(
    dest: Path, n: int, seed: int = 0
) -> list[tuple[Path, list[tuple[str, str, Box]]]]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, shapes = two_shape_scene(seed * 10_000 + i)
        path = dest / f"scene_{i:03d}.png"
        img.save(path)
        out.append((path, shapes))
    return out
