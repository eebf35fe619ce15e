"""Path -> model input (uint8, before mean/std) or DecodeFailed(path, reason); never torch.

Runs in decode worker processes. Every file is opened without blocking and without trusting its
name: content picks the format (from a short list of photo formats), the declared size is
checked against `max_pixels` before any pixel is decoded, and JPEGs decode at reduced size via
`Image.draft` (DCT scaling) when the model input is much smaller than the photo.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from imgsearch.errors import ImgsearchError
from imgsearch.exif import PhotoMeta, read_metadata
from imgsearch.filetype import (
    RAW_EXTENSIONS,
    describe_file_type,
    fingerprint_fd,
    sniff_format,
    sniff_unsupported,
)
from imgsearch.modelspec import PreprocessSpec
from imgsearch.photohash import PHash, picture_hash

RAW_REASON = "camera RAW file: not supported (index the camera's JPEG beside it, or export one)"

# JPEG draft: decode at 1/2, 1/4 or 1/8 scale while both sides stay >= DRAFT_FACTOR x the model
# input side. Measured, model input via draft vs full decode: factor 2 gives PSNR >= 49 dB
# (12 MP: median 54.6 dB, 6x faster than a full decode); 1.5 is 1.3x faster again at >= 39 dB;
# 1 drops to 30 dB on some photos.
DRAFT_FACTOR = 2
# Hard ceiling whatever max_pixels says: 2**30 px is 3 GiB as RGB (Pillow's own bomb check
# is raised to match, so this message replaces its DecompressionBombError).
HARD_MAX_PIXELS = 1 << 30
# to_model_input resizes the whole picture (exactly as open_clip) while the resized picture is at
# most this many times the model input; beyond (extreme aspect ratios) it resamples the crop only.
EXACT_RESIZE_MAX_AREA = 16
BACKGROUND = (128, 128, 128)  # transparency is composited onto neutral mid-grey
# A drafted image carries its full oriented size and, in its own pixels, the box holding the
# picture (DCT scaling rounds up: the last row/column may be partly padding), so that
# to_model_input follows open_clip's geometry for the full-size picture.
FULL_SIZE = "imgsearch.full_size"
CONTENT_BOX = "imgsearch.content_box"

# Photo formats only: never hand a .jpg that is really EPS/PSD/... to a rarer decoder.
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_SUPPORT = {Image.Resampling.BICUBIC: 2.0, Image.Resampling.BILINEAR: 1.0}  # Pillow filters
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_open_formats: tuple[str, ...] = ()


class DecodeError(ImgsearchError):
    """A file that cannot become model input; `reason` is short and user-facing."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across the worker pool
        return (DecodeError, (self.path, self.reason))


@dataclass(frozen=True)
class Decoded:
    """Model input for one file plus what the library stores about it."""

    path: str
    pixels: npt.NDArray[np.uint8]  # (H, W, 3) == spec.size, before mean/std
    width: int  # the picture's real size after EXIF orientation (not the draft size)
    height: int
    taken_at: str | None  # == meta.taken_at: ISO 8601, EXIF capture time else file mtime
    size: int  # fstat of the file as it was read
    mtime_ns: int
    fingerprint: str  # imgsearch.filetype.fingerprint of the same bytes
    meta: PhotoMeta  # capture time and its source, camera, lens, GPS, type, folder
    phash: PHash | None = None  # of the upright picture (duplicates); None: not computed


@dataclass(frozen=True)
class DecodeFailed:
    """A bad image is data: stored as (path, reason) and reported as `skipping PATH: reason`."""

    path: str
    reason: str


class _Loaded(NamedTuple):
    image: Image.Image
    width: int
    height: int
    meta: PhotoMeta
    st: os.stat_result
    fingerprint: str


def _setup() -> tuple[str, ...]:
    """Once per process: HEIF opener, Pillow's bomb ceiling; returns the formats to try."""
    global _open_formats
    if _open_formats:
        return _open_formats
    from PIL import features

    try:  # without it HEIC files fail with "unsupported format: HEIF (install pillow-heif)"
        import pillow_heif

        pillow_heif.register_heif_opener()
        if not features.check("avif"):  # Pillow >= 11.3 reads AVIF; old pillow-heif did too
            getattr(pillow_heif, "register_avif_opener", lambda: None)()
    except ImportError:
        pass
    Image.MAX_IMAGE_PIXELS = HARD_MAX_PIXELS  # Pillow warns past it, raises at 2x: a backstop
    Image.init()
    _open_formats = tuple(f for f in PHOTO_FORMATS if f in Image.OPEN)
    return _open_formats


def draft_target(spec: PreprocessSpec) -> tuple[int, int]:
    """The draft request for `spec`: both sides >= DRAFT_FACTOR x the larger model side."""
    side = DRAFT_FACTOR * max(spec.size)
    return (side, side)


def _os_reason(exc: OSError, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return "broken symbolic link (its target does not exist)"
        return "file disappeared before it could be read"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == 40:  # ELOOP
        return "symbolic link loop"
    return f"cannot read file: {exc.strerror or exc}"


def _open_fd(path: str) -> tuple[int, os.stat_result]:
    """Open for reading without blocking; refuse anything but a non-empty regular file."""
    try:
        st = os.stat(path)  # a FIFO or device is refused before it is ever opened
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError(path, f"not a regular file ({describe_file_type(st.st_mode)})")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DecodeError(path, _os_reason(exc, path)) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        os.close(fd)
        kind = describe_file_type(st.st_mode)
        raise DecodeError(
            path, "empty file" if stat.S_ISREG(st.st_mode) else f"not a regular file ({kind})"
        )
    return fd, st


def _pil_reason(exc: BaseException) -> str:
    """Turn what Pillow and its plugins raise while decoding into a short reason."""
    text = str(exc)
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large: {text}"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return "truncated image data"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"read error: {exc.strerror or text}"
    if len(text) > 120:
        text = text[:117] + "..."
    return f"corrupt image data ({type(exc).__name__}: {text})" if text else "corrupt image data"


def _identify(fh: object, head: bytes, path: str, formats: tuple[str, ...]) -> Image.Image:
    """Image.open over our fd, restricted to photo formats, with a reason when it says no."""
    kind = sniff_format(head)
    try:
        return Image.open(fh, formats=formats)  # type: ignore[arg-type]
    except UnidentifiedImageError:
        pass
    except Exception as exc:
        reason = _pil_reason(exc)
        if reason.startswith(("truncated", "corrupt")):  # the header itself is bad
            reason = f"corrupt or truncated {kind or 'image'} header ({type(exc).__name__}: {exc})"
        raise DecodeError(path, reason) from exc
    if kind in ("HEIF", "AVIF") and kind not in formats:
        raise DecodeError(path, f"unsupported format: {kind} (install pillow-heif)")
    if kind is not None:
        raise DecodeError(path, f"corrupt or truncated {kind} header")
    other = sniff_unsupported(head)
    if other is not None:
        raise DecodeError(path, f"unsupported format: {other}")
    raise DecodeError(path, "not an image (unrecognised content)")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: 16-bit scaled (not clipped), transparency over mid-grey."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float64)
        top = float(values.max(initial=0.0))
        if mode.startswith("I;16") or top > 255:
            scale = 255.0 / (65535.0 if top <= 65535 else top)  # 16-bit, else its own range
        else:
            scale = 255.0 if mode == "F" and top <= 1.0 else 1.0  # float 0..1, or 8-bit values
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("LA" if mode == "La" else mode).convert("RGBA")
        canvas = Image.new("RGB", image.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _check_size(path: str, width: int, height: int, max_pixels: int) -> None:
    limit = min(max_pixels, HARD_MAX_PIXELS)
    if width <= 0 or height <= 0:
        raise DecodeError(path, f"corrupt image header (size {width}x{height})")
    if width * height > limit:
        size, cap = _megapixels(width * height), _megapixels(limit)
        raise DecodeError(path, f"too large: {width}x{height} = {size} exceeds max_pixels ({cap})")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels} pixels"


def _load(path: str, max_pixels: int, draft_to: tuple[int, int] | None) -> _Loaded:
    """Open, check, decode and orient one file; every failure is a DecodeError."""
    with warnings.catch_warnings():  # Pillow warns about bad EXIF tags: our reasons suffice
        warnings.simplefilter("ignore")
        return _load_file(path, max_pixels, draft_to)


@contextlib.contextmanager
def _opened(path: str) -> Iterator[tuple[int, os.stat_result, str, Image.Image]]:
    """(fd, stat, fingerprint, identified image) of a file opened once; nothing decoded yet.
    Shared by the CPU decode and the GPU path's payload reader."""
    formats = _setup()
    fd, st = _open_fd(path)
    with os.fdopen(fd, "rb") as fh:
        try:
            head = os.pread(fd, 32, 0)
            fingerprint = fingerprint_fd(fd, st.st_size)
        except OSError as exc:
            raise DecodeError(path, _os_reason(exc, path)) from exc
        yield fd, st, fingerprint, _identify(fh, head, path, formats)


def _load_file(path: str, max_pixels: int, draft_to: tuple[int, int] | None) -> _Loaded:
    with _opened(path) as (fd, st, fingerprint, image):
        width, height = image.size
        _check_size(path, width, height, max_pixels)  # declared size: bombs never decode
        content = (0.0, 0.0, float(width), float(height))
        try:
            if draft_to is not None and image.format in ("JPEG", "MPO"):
                drafted = image.draft("RGB", draft_to)
                content = drafted[1] if drafted else content
            image.load()
            rgb = _to_rgb(image)
        except Exception as exc:
            raise DecodeError(path, _pil_reason(exc)) from exc
        meta = read_metadata(image, path, st, size=(width, height))  # after load: PNG's eXIf
        orientation = meta.orientation
        after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise DecodeError(path, "file changed while it was being read")
    if orientation in _TRANSPOSE:
        content = _transpose_box(content, rgb.size, orientation)
        rgb = rgb.transpose(_TRANSPOSE[orientation])
        if orientation >= 5:
            width, height = height, width
    if rgb.size != (width, height):
        rgb.info[FULL_SIZE] = (width, height)
        rgb.info[CONTENT_BOX] = content
    return _Loaded(rgb, width, height, meta, st, fingerprint)


def _transpose_box(
    box: tuple[float, float, float, float], size: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """Where a box of a w x h image lands after the EXIF orientation's transpose."""
    (x0, y0, x1, y1), (w, h) = box, size
    if orientation in (2, 3, 7, 8):  # steps that mirror x (before any swap)
        x0, x1 = w - x1, w - x0
    if orientation in (3, 4, 6, 7):  # steps that mirror y
        y0, y1 = h - y1, h - y0
    if orientation >= 5:  # x and y swap
        x0, y0, x1, y1 = y0, x0, y1, x1
    return (x0, y0, x1, y1)


def open_image(
    path: str, *, max_pixels: int, draft_to: tuple[int, int] | None = None
) -> Image.Image:
    """The file as an oriented RGB image; raises DecodeError with the reason.

    With `draft_to`, a JPEG decodes at the smallest DCT scale keeping both sides >= draft_to;
    the image then carries FULL_SIZE/CONTENT_BOX in `info` for to_model_input.
    """
    return _load(path, max_pixels, draft_to).image


def _resized_geometry(w: int, h: int, spec: PreprocessSpec) -> tuple[int, int, int]:
    """(new_w, new_h, resample) of open_clip's eval resize for a w x h image."""
    out_h, out_w = spec.size
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize_mode == "squash":
        return out_w, out_h, resample
    if spec.resize_mode == "longest":  # ResizeKeepRatio(longest=1)
        ratio = max(h / out_h, w / out_w)
        return round(w / ratio), round(h / ratio), resample
    if spec.resize_mode != "shortest":
        raise ValueError(f"unknown resize_mode {spec.resize_mode!r}")
    if out_h == out_w:  # torchvision Resize(int): short side -> size, long side truncated
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = out_h, int(out_h * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return new_w, new_h, resample
    # open_clip's non-square 'shortest' uses ResizeKeepRatio(size) whose default is bicubic
    ratio = min(h / out_h, w / out_w)
    return round(w / ratio), round(h / ratio), Image.Resampling.BICUBIC


def _crop_or_pad(new: int, out: int) -> tuple[int, int, int]:
    """(offset into the resized axis, length kept, padding before) like torchvision."""
    if new >= out:
        return int(round((new - out) / 2.0)), out, 0
    return 0, new, (out - new) // 2


def _resize_region(
    image: Image.Image,
    box: tuple[float, float, float, float],
    out: tuple[int, int],
    resample: int,
) -> Image.Image:
    """image.resize(out, box=box) as two explicit passes, horizontal first like a full resize.

    Given a `box`, Pillow may resample vertically first, which moves results by up to ~20/255
    on upscales; the horizontal pass here reads only the rows the vertical pass needs.
    """
    (w, h), (out_w, out_h) = image.size, out
    if resample == Image.Resampling.NEAREST:
        return image.resize(out, resample, box=box)
    x0, y0, x1, y1 = box
    reach = _SUPPORT[resample] * max((y1 - y0) / out_h, 1.0) + 2  # vertical kernel + margin
    row0, row1 = max(0, math.floor(y0 - reach)), min(h, math.ceil(y1 + reach))
    strip = image.crop((0, row0, w, row1))
    strip = strip.resize((out_w, row1 - row0), resample, box=(x0, 0.0, x1, float(row1 - row0)))
    return strip.resize(out, resample, box=(0.0, y0 - row0, float(out_w), y1 - row0))


def to_model_input(image: Image.Image, spec: PreprocessSpec) -> npt.NDArray[np.uint8]:
    """open_clip's eval resize + centre crop/pad as uint8 (H, W, 3), normalised later.

    Bit-exact with open_clip's transform on a full-size image, except for extreme aspect ratios
    where only the kept region is resampled (within 2/255) instead of, say, resizing 20000x10
    to 448000x224. A drafted image from open_image is mapped onto its full-size geometry.
    """
    if image.mode != "RGB":
        image = _to_rgb(image)
    w, h = image.info.get(FULL_SIZE, image.size)
    out_h, out_w = spec.size
    new_w, new_h, resample = _resized_geometry(w, h, spec)
    left, keep_w, pad_left = _crop_or_pad(new_w, out_w)
    top, keep_h, pad_top = _crop_or_pad(new_h, out_h)
    exact = image.size == (w, h) and new_w * new_h <= EXACT_RESIZE_MAX_AREA * out_w * out_h
    if exact:
        resized = image if (new_w, new_h) == (w, h) else image.resize((new_w, new_h), resample)
        region = resized.crop((left, top, left + keep_w, top + keep_h))
    else:  # full-size coordinates -> this image's pixels, then resample the kept part only
        cx0, cy0, cx1, cy1 = image.info.get(CONTENT_BOX, (0.0, 0.0, float(w), float(h)))
        kx, ky = (cx1 - cx0) / new_w, (cy1 - cy0) / new_h
        box = (
            cx0 + left * kx,
            cy0 + top * ky,
            cx0 + (left + keep_w) * kx,
            cy0 + (top + keep_h) * ky,
        )
        region = _resize_region(image, box, (keep_w, keep_h), resample)
    if (keep_w, keep_h) != (out_w, out_h):
        fill = spec.fill_color if spec.resize_mode == "longest" else 0
        canvas = Image.new("RGB", (out_w, out_h), (fill, fill, fill))
        canvas.paste(region, (pad_left, pad_top))
        region = canvas
    return np.array(region, dtype=np.uint8)


def decode(
    path: str, spec: PreprocessSpec, *, max_pixels: int, draft: bool = True
) -> Decoded | DecodeFailed:
    """One file -> Decoded, or DecodeFailed with a specific reason; never raises for bad input."""
    if is_raw(path):  # TIFF-like inside, but the photo is not in Pillow's reach
        return DecodeFailed(path, RAW_REASON)
    try:
        loaded = _load(path, max_pixels, draft_target(spec) if draft else None)
        pixels = to_model_input(loaded.image, spec)
        phash = _phash(loaded.image)
    except DecodeError as exc:
        return DecodeFailed(path, exc.reason)
    except MemoryError:
        return DecodeFailed(path, "out of memory while decoding")
    except Exception as exc:  # a bug or a decoder surprise: still data, never a crash
        return DecodeFailed(path, f"unexpected error: {type(exc).__name__}: {exc}")
    return Decoded(
        path=path,
        pixels=pixels,
        width=loaded.width,
        height=loaded.height,
        taken_at=loaded.meta.taken_at,
        size=loaded.st.st_size,
        mtime_ns=loaded.st.st_mtime_ns,
        fingerprint=loaded.fingerprint,
        meta=loaded.meta,
        phash=phash,
    )


def _phash(image: Image.Image) -> PHash | None:
    """The picture's perceptual hash from the pixels decoded anyway (~2 ms on a JPEG drafted
    to twice the model input); stored so that `duplicates` never decodes a photo again."""
    try:
        return picture_hash(image)
    except Exception:  # a hash is an extra: without one, duplicates reads the file itself
        return None


def read_file_metadata(path: str, *, max_pixels: int) -> PhotoMeta | DecodeFailed:
    """Metadata only, no model input: for libraries indexed before metadata was stored, so that
    they get it on the next `index` without re-embedding. Same safe open as decode()."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _opened(path) as (_fd, st, _fingerprint, image):
                _check_size(path, *image.size, max_pixels)  # a PNG may decode to find eXIf
                return read_metadata(image, path, st)
    except DecodeError as exc:
        return DecodeFailed(path, exc.reason)
    except Exception as exc:  # read_metadata never raises; opening might, oddly
        return DecodeFailed(path, f"unexpected error: {type(exc).__name__}: {exc}")


def read_file_phash(path: str, *, max_pixels: int) -> PHash | None:
    """The perceptual hash alone, for rows stored before it was kept (0008): the same safe
    open as decode(), a JPEG drafted small (pHash looks at 32x32), EXIF orientation applied.
    None when the file cannot be read: then duplicates reads it again itself."""
    if is_raw(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _opened(path) as (_fd, st, _fingerprint, image):
                _check_size(path, *image.size, max_pixels)
                if image.format in ("JPEG", "MPO"):
                    image.draft("RGB", (256, 256))
                image.load()
                orientation = read_metadata(image, path, st).orientation
                picture = _to_rgb(image)
        if orientation in _TRANSPOSE:
            picture = picture.transpose(_TRANSPOSE[orientation])
        return picture_hash(picture)
    except Exception:  # DecodeError or a decoder surprise: no hash, never a crash
        return None


def is_raw(path: str) -> bool:
    """A camera RAW file by its name (see RAW_REASON)."""
    return os.path.splitext(path)[1].lower() in RAW_EXTENSIONS


def psnr(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape (inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
