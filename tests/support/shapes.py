"""Generated colour-shape pictures: a tiny, fully known world for testing semantic search.

Each picture shows one coloured shape on a light, slightly noisy background, at a random position,
scale and tilt, so that pictures of one class differ from each other while staying unambiguous.
The 20 classes (5 colours x 4 shapes) have bare captions such as "a red circle".
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 200, 20),
    "purple": (135, 45, 175),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)

_SUPERSAMPLE = 4  # draw large and downscale, so edges are anti-aliased like a real photo's


def caption(color: str, shape: str) -> str:
    """The bare caption of a class, e.g. "a red circle"."""
    return f"a {color} {shape}"


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape of circumradius `r` centred at (cx, cy), tilted by `angle` radians."""
    if shape == "square":
        pts = [(math.pi / 4 + k * math.pi / 2, r) for k in range(4)]
    elif shape == "triangle":
        pts = [(-math.pi / 2 + k * 2 * math.pi / 3, r) for k in range(3)]
    elif shape == "star":
        pts = [(-math.pi / 2 + k * math.pi / 5, r if k % 2 == 0 else 0.45 * r) for k in range(10)]
    else:
        raise ValueError(f"not a polygon shape: {shape!r}")
    return [(cx + d * math.cos(a + angle), cy + d * math.sin(a + angle)) for a, d in pts]


def draw_shape(color: str, shape: str, *, size: int = 64, rng: random.Random) -> Image.Image:
    """One RGB picture of a `color` `shape`, varied by `rng` (position, scale, tilt, background).

    The shape spans 50-85% of the canvas so it stays clearly visible after the model's resize.
    """
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}")
    big = size * _SUPERSAMPLE
    # Light, near-neutral background with a slight random tint.
    base = rng.uniform(175, 245)
    bg = tuple(int(min(255, max(0, base + rng.uniform(-12, 12)))) for _ in range(3))
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)

    extent = rng.uniform(0.5, 0.85) * big  # width of the shape's bounding box
    r = extent / 2
    cx = rng.uniform(r, big - r)
    cy = rng.uniform(r, big - r)
    fill = tuple(int(min(255, max(0, v + rng.uniform(-18, 18)))) for v in COLORS[color])
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        angle = math.radians(rng.uniform(-15, 15))
        # A square tilted by up to 15 degrees still fits its box with circumradius 1.15 r.
        radius = r * (1.15 if shape == "square" else 1.0)
        draw.polygon(_polygon(shape, cx, cy, radius, angle), fill=fill)

    img = img.reduce(_SUPERSAMPLE)  # box-filter downscale: cheap anti-aliasing
    noise_rng = np.random.default_rng(rng.getrandbits(32))
    arr = np.asarray(img, dtype=np.float32)
    arr += noise_rng.normal(0.0, rng.uniform(2.0, 8.0), size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def write_pictures(
    dest: Path, per_class: int, seed: int, size: int = 64, fmt: str = "png"
) -> list[tuple[Path, str, str]]:
    """Write `per_class` pictures of each of the 20 classes into `dest` as `red_circle_003.png`.

    Returns (path, colour, shape) for each file, in a deterministic order given `seed`.
    """
    if fmt not in ("png", "jpg"):
        raise ValueError(f"fmt must be 'png' or 'jpg', not {fmt!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out: list[tuple[Path, str, str]] = []
    for color, shape in CLASSES:
        for i in range(per_class):
            img = draw_shape(color, shape, size=size, rng=rng)
            path = dest / f"{color}_{shape}_{i:03d}.{fmt}"
            if fmt == "jpg":
                img.save(path, quality=90)
            else:
                img.save(path)
            out.append((path, color, shape))
    return out
