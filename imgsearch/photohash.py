"""Photo file -> content hash (exact copies) and perceptual hash (near copies), for
imgsearch.duplicates; both are None for a file that cannot be read, never an exception."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

# A perceptual hash: the pHash (DCT of a 32x32 grey thumbnail, 64 bits against the median: the
# method of imagehash.phash) of the upright picture, then those of WINDOWS: 95% of each side at
# offsets of 0, 2.5% and 5% (3 x 3). A copy cropped by up to 5% is within 1.25% of one window's
# framing, so its full hash is near that window's hash; comparing each full hash with the
# other's windows makes crops match: on 200 imagenet-500 photos, 5% crops max 6 bits (p95 4;
# the full and central hashes alone: max 14), distinct pairs min 12 (benchmarks/DUPLICATES.md).
PHash = tuple[int, ...]
WINDOW = 0.95
OFFSETS = (0.0, 0.025, 0.05)
WINDOWS = tuple((x, y) for y in OFFSETS for x in OFFSETS)
_N, _LOW = 32, 8  # thumbnail side; the low-frequency block kept
# DCT-II rows (scipy.fftpack.dct's, up to a factor that the median comparison ignores)
_DCT = np.cos(np.pi * np.arange(_LOW)[:, None] * (2 * np.arange(_N)[None, :] + 1) / (2 * _N))


def content_hash(path: str) -> str | None:
    """The whole file's hash (imgsearch/filehash.py); None when it cannot be read."""
    from imgsearch.filehash import content_hash as file_hash

    try:
        return file_hash(path)
    except OSError:
        return None


def perceptual_hash(path: str) -> PHash | None:
    """PHash of the upright picture (EXIF orientation applied) and of its central 95%; None
    when the file cannot be decoded (then it is never a near duplicate)."""
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path) as image:
                image.draft("L", (256, 256))  # JPEG: decode at 1/2..1/8 scale; pHash is 32x32
                return picture_hash(ImageOps.exif_transpose(image))
        except Exception:  # a bad file is data: no hash, so never a near duplicate
            return None


def picture_hash(image: Image.Image) -> PHash:
    """The PHash of an upright picture (any mode): the whole picture, then each window. One
    grey _BASE x _BASE copy; each 32x32 thumbnail is a linear resampling of it (matrices)."""
    from PIL import Image

    grey = image.convert("L")
    factor = min(grey.size) // _BASE
    if factor > 1:
        grey = grey.reduce(factor)  # box average: cheap, and LANCZOS then reads a small copy
    base = np.asarray(grey.resize((_BASE, _BASE), Image.Resampling.LANCZOS), np.float64)
    # DCT(resample(base)) = (_DCT @ rows_y) @ base @ (rows_x.T @ _DCT.T): one (80, 128) product
    rows = (_LEFT @ base).reshape(len(_RIGHT), _LOW, _BASE)
    low = np.matmul(rows, _RIGHT).reshape(len(_RIGHT), -1)  # (hashes, 64)
    above = np.packbits(low > np.median(low, axis=1, keepdims=True), axis=1)
    return tuple(int.from_bytes(row.tobytes(), "big") for row in above)


def _resampling(start: float, length: float) -> np.ndarray:
    """(_N, _BASE) weights: a triangle filter as wide as one output pixel (antialiased
    bilinear, as Pillow's), mapping [start, start + length) of _BASE pixels onto _N."""
    scale = length * _BASE / _N
    centres = (start * _BASE + (np.arange(_N) + 0.5) * scale)[:, None]
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(_BASE)[None, :] + 0.5 - centres) / scale)
    return weights / weights.sum(axis=1, keepdims=True)


_BASE = 128
_FULL = _resampling(0.0, 1.0)
_ROWS_X = np.stack([_FULL] + [_resampling(x, WINDOW) for x, _ in WINDOWS])
_ROWS_Y = np.stack([_FULL] + [_resampling(y, WINDOW) for _, y in WINDOWS])
# The DCT folded into the resampling of each hash: 4x less arithmetic than resampling to 32x32
# first (0.14 against 0.54 ms a photo), the same 64 coefficients to ~1e-11, so the same hashes
# as before for every picture with structure (all 500 shared photos). A picture flat along an
# axis has coefficients that are 0 up to rounding: their bits were noise before and still are.
_LEFT = (_DCT @ _ROWS_Y).reshape(-1, _BASE)  # (hashes * 8, _BASE)
_RIGHT = _ROWS_X.transpose(0, 2, 1) @ _DCT.T  # (hashes, _BASE, 8)


def pack(h: PHash) -> bytes:
    """The library's `phash` column: 8 big-endian bytes per hash, the full picture's first."""
    return b"".join(part.to_bytes(8, "big") for part in h)


def unpack(raw: bytes | None) -> PHash | None:
    """The PHash of a `phash` column value; None for NULL or a value of another shape."""
    if not raw or len(raw) % 8:
        return None
    return tuple(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8))


def hash_distance(a: PHash | None, b: PHash | None) -> int | None:
    """Bits apart, crop-aware: the full hashes, or one's full against the other's windows."""
    if a is None or b is None:
        return None
    full = min((a[0] ^ w).bit_count() for w in (b[0], *b[1:]))
    return min([full, *((w ^ b[0]).bit_count() for w in a[1:])])


__all__ = [
    "PHash",
    "content_hash",
    "hash_distance",
    "pack",
    "perceptual_hash",
    "picture_hash",
    "unpack",
]
