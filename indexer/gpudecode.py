"""JPEG bytes -> model input decoded on a torch device (nvjpeg on CUDA), so decode keeps up with
the GPU encoder.

Split in two: `prepare` runs in the decode workers (no torch: the same safe open, size check,
EXIF facts and fingerprint as imgsearch.decode, then the raw bytes), `DeviceDecoder` runs next to
the encoder and batch-decodes with torchvision.io.decode_jpeg, orients, resizes and centre-crops
like open_clip. Whatever the device path cannot reproduce faithfully (non-JPEGs, CMYK, greyscale,
arithmetic-coded, incomplete or huge JPEGs, resize modes other than 'shortest') goes through
imgsearch.decode on the CPU, so every file gets the same answer either way.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image

from imgsearch.decode import (
    EXACT_RESIZE_MAX_AREA,
    Decoded,
    DecodeError,
    DecodeFailed,
    _check_size,
    _crop_or_pad,
    _opened,
    _os_reason,
    _resized_geometry,
    decode,
    is_raw,
)
from imgsearch.errors import ImgsearchError
from imgsearch.exif import PhotoMeta, read_metadata
from imgsearch.modelspec import PreprocessSpec

if TYPE_CHECKING:
    import torch

# Huffman baseline, extended and progressive frames: what nvjpeg and libjpeg both decode.
# Arithmetic-coded (SOF9+), lossless and hierarchical frames stay on the CPU (nvjpeg lacks them).
DEVICE_SOF = (0xC0, 0xC1, 0xC2)
# Panoramas and scans past this go to a CPU worker, whose DCT draft decodes them at 1/8 scale;
# the device would decode (and hold) every pixel.
DEVICE_MAX_PIXELS = 50_000_000
# Pixels decoded per decode_jpeg call (uint8 RGB: 3 bytes each) and resized per interpolate
# call (float32: 12 bytes each), so a batch of 12 MP photos stays within ~1 GiB at a time.
MAX_BATCH_PIXELS = 1 << 28
RESIZE_CHUNK_PIXELS = 1 << 26
_MODES = ("bicubic", "bilinear")  # antialiased in torch, these are Pillow's filters
_TORCH_MODES = {Image.Resampling.BICUBIC: "bicubic", Image.Resampling.BILINEAR: "bilinear"}
PROBE_COLOUR = (200, 30, 30)
_NO_PIXELS = np.empty((0, 0, 3), np.uint8)  # Decoded.pixels when the pixels live in the tensor
_NO_PIXELS.setflags(write=False)
_SOURCE_PREFIX = re.compile(r"^.*?\.(?:cpp|cu|h):\d+,?\s*")


@dataclass(frozen=True)
class JpegPayload:
    """What a worker sends for a device decode: raw bytes plus the facts Decoded needs."""

    path: str
    data: bytes
    width: int  # stored (pre-orientation) size from the frame header
    height: int
    orientation: int  # EXIF orientation 1..8 (1 if absent or garbled)
    meta: PhotoMeta
    size: int
    mtime_ns: int
    fingerprint: str


class _Frame(NamedTuple):
    sof: int  # frame marker, 0xC0..0xCF
    components: bytes  # component ids, in frame order
    adobe_transform: int | None  # APP14 colour transform (0: stored as RGB/CMYK, no YCbCr)
    complete: bool  # an EOI marker follows the first scan


def device_supported(spec: PreprocessSpec) -> bool:
    """True when DeviceDecoder reproduces open_clip's eval resize for `spec` (else CPU only)."""
    return spec.resize_mode == "shortest" and spec.interpolation in _MODES


def _scan_frame(data: bytes) -> _Frame | None:
    """Walk the JPEG markers up to the first scan; None when they do not parse."""
    i, n = 2, len(data)
    sof, components, adobe = 0, b"", None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i + 4 : i + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == 0xDA:  # start of scan: 0xFFD9 cannot occur in stuffed entropy data
            return _Frame(sof, components, adobe, data.find(b"\xff\xd9", i + 2 + length) >= 0)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(segment) >= 6:
            sof, count = marker, segment[5]
            components = bytes(segment[6 : 6 + 3 * count : 3])
        elif marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            adobe = segment[11]
        i += 2 + length
    return None


def _frame_decodable(frame: _Frame | None) -> bool:
    """Complete, Huffman-coded, three-component YCbCr: where nvjpeg and libjpeg agree."""
    return (
        frame is not None
        and frame.complete  # else the CPU path names the truncation as Pillow sees it
        and frame.sof in DEVICE_SOF
        and len(frame.components) == 3
        and frame.components != b"RGB"  # ids 'R','G','B' mean no YCbCr transform
        and frame.adobe_transform != 0
    )


def _fits_device(width: int, height: int, orientation: int, spec: PreprocessSpec) -> bool:
    """Not huge (a CPU draft wins) and not extreme in aspect (decode.py resamples region-only)."""
    if width * height > DEVICE_MAX_PIXELS:
        return False
    if orientation >= 5:
        width, height = height, width
    new_w, new_h, _ = _resized_geometry(width, height, spec)
    return new_w * new_h <= EXACT_RESIZE_MAX_AREA * spec.size[0] * spec.size[1]


def _read_payload(path: str, spec: PreprocessSpec, max_pixels: int) -> JpegPayload | None:
    """The payload of a device-decodable JPEG, None for the CPU path; bad files raise."""
    with _opened(path) as (fd, st, fingerprint, image):
        if image.format not in ("JPEG", "MPO") or image.mode != "RGB":  # CMYK, grey: rare, CPU
            return None
        width, height = image.size
        _check_size(path, width, height, max_pixels)
        meta = read_metadata(image, path, st)
        orientation = meta.orientation
        if not _fits_device(width, height, orientation, spec):
            return None
        try:
            data = os.pread(fd, st.st_size + 1, 0)  # one byte more shows a file that grew
        except OSError as exc:
            raise DecodeError(path, _os_reason(exc, path)) from exc
        if not _frame_decodable(_scan_frame(data)):
            return None
        after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns, len(data)) != (st.st_size, st.st_mtime_ns, st.st_size):
        raise DecodeError(path, "file changed while it was being read")
    return JpegPayload(
        path, data, width, height, orientation, meta, st.st_size, st.st_mtime_ns, fingerprint
    )


def prepare(
    path: str, spec: PreprocessSpec, *, max_pixels: int
) -> JpegPayload | Decoded | DecodeFailed:
    """Worker side: a JPEG the device can decode -> JpegPayload; any other file -> decode()."""
    if not device_supported(spec) or is_raw(path):
        return decode(path, spec, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():  # Pillow warns about bad EXIF tags: reasons suffice
            warnings.simplefilter("ignore")
            payload = _read_payload(path, spec, max_pixels)
    except DecodeError as exc:
        return DecodeFailed(path, exc.reason)
    except MemoryError:
        return DecodeFailed(path, "out of memory while reading")
    except Exception as exc:  # a bug or a parser surprise: still data, never a crash
        return DecodeFailed(path, f"unexpected error: {type(exc).__name__}: {exc}")
    return decode(path, spec, max_pixels=max_pixels) if payload is None else payload


def _decode_reason(exc: BaseException) -> str:
    """decode_jpeg's error (C++ source location stripped) as a short skip reason."""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "out of memory while decoding"
    text = _SOURCE_PREFIX.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    if len(text) > 100:
        text = text[:97] + "..."
    if "truncated" in text.lower():
        return f"truncated image data (decode_jpeg: {text})"
    return f"corrupt JPEG data (decode_jpeg: {text or type(exc).__name__})"


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(..., H, W) as EXIF `orientation` says it should be shown (PIL's exif_transpose)."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation >= 5:
        image = image.transpose(-2, -1)
        flips = {5: (), 6: (-1,), 7: (-2, -1), 8: (-2,)}[orientation]
        return image.flip(flips) if flips else image
    return image


class DeviceDecoder:
    """Batches of JpegPayload -> (N, H, W, 3) uint8 model inputs on `device`, like open_clip.

    The resize is Pillow's (open_clip resizes PIL images): antialiased bicubic/bilinear, one
    pass per axis, horizontal first, each rounded to uint8, in torch float32 on any device; to
    the size torchvision's Resize picks (long side truncated), then torchvision's centre crop.
    """

    def __init__(
        self,
        spec: PreprocessSpec,
        device: str,
        *,
        max_batch_pixels: int = MAX_BATCH_PIXELS,
    ) -> None:
        if not device_supported(spec):
            raise ValueError(
                f"DeviceDecoder reproduces resize_mode 'shortest' with bicubic/bilinear only, not "
                f"{spec.resize_mode!r}/{spec.interpolation!r}; use imgsearch.decode.decode"
            )
        self.spec = spec
        self.device = device
        self.max_batch_pixels = max_batch_pixels

    def __call__(
        self, payloads: Sequence[JpegPayload]
    ) -> tuple[torch.Tensor, list[Decoded | DecodeFailed]]:
        """Decode `payloads`; tensor row i is the i-th Decoded in the list (in payload order)."""
        import torch

        out_h, out_w = self.spec.size
        batch = torch.zeros((len(payloads), 3, out_h, out_w), dtype=torch.uint8, device=self.device)
        records: list[Decoded | DecodeFailed] = []
        for part in self._parts(payloads):  # decoded pixels of one part at a time in memory
            groups: dict[tuple[int, int, int], list[tuple[int, torch.Tensor]]] = {}
            for payload, image in zip(part, self._decode(part)):
                if not isinstance(image, torch.Tensor):
                    records.append(image)
                    continue
                key = (image.shape[1], image.shape[2], payload.orientation)
                groups.setdefault(key, []).append((len(records), image))
                records.append(_record(payload))
            for (h, w, orientation), members in groups.items():  # same size: one resize call
                per_call = max(1, RESIZE_CHUNK_PIXELS // (h * w))
                for start in range(0, len(members), per_call):
                    rows, images = zip(*members[start : start + per_call])
                    stack = orient(torch.stack(images), orientation)
                    self._model_input(stack, batch, list(rows))
        kept = [i for i, record in enumerate(records) if isinstance(record, Decoded)]
        if len(kept) < len(records):
            batch = batch[torch.tensor(kept, dtype=torch.long, device=self.device)]
        return batch.permute(0, 2, 3, 1).contiguous(), records

    def probe(self) -> None:
        """Decode one tiny JPEG, so that a device that cannot (no nvjpeg, no driver) fails once
        here, with the fix, instead of turning every photo into a skipped file."""
        sample = io.BytesIO()
        Image.new("RGB", (16, 16), PROBE_COLOUR).save(sample, "JPEG", quality=95)
        meta = PhotoMeta(*(None,) * 8, 1, 16, 16, "jpeg", "")  # orientation, size, type, folder
        payload = JpegPayload("<probe>", sample.getvalue(), 16, 16, 1, meta, 0, 0, "")
        try:
            batch, records = self([payload])
            pixels = batch.cpu().numpy()
        except Exception as exc:
            reason = _decode_reason(exc)
        else:
            if isinstance(records[0], DecodeFailed):
                reason = records[0].reason
            elif np.abs(pixels.astype(np.int16) - PROBE_COLOUR).max() <= 8:
                return
            else:
                reason = "decoded colours are wrong"
        raise ImgsearchError(
            f"JPEG decoding on device {self.device!r} does not work here ({reason}); "
            f"decode on the CPU instead"
        )

    def _parts(self, payloads: Sequence[JpegPayload]) -> list[list[JpegPayload]]:
        """Consecutive runs of payloads of at most max_batch_pixels in all (one at the least)."""
        parts: list[list[JpegPayload]] = []
        total = self.max_batch_pixels
        for payload in payloads:
            pixels = payload.width * payload.height
            if total + pixels > self.max_batch_pixels:
                parts.append([])
                total = 0
            parts[-1].append(payload)
            total += pixels
        return parts

    def _decode(self, payloads: Sequence[JpegPayload]) -> list[torch.Tensor | DecodeFailed]:
        """One batched decode_jpeg call; if it fails, one call per image to find the bad ones."""
        try:
            return self._checked(payloads, self._decode_jpeg(payloads))
        except Exception as exc:
            if len(payloads) == 1:
                return [DecodeFailed(payloads[0].path, _decode_reason(exc))]
        return [image for payload in payloads for image in self._decode([payload])]

    def _decode_jpeg(self, payloads: Sequence[JpegPayload]) -> list[torch.Tensor]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():  # read-only bytes; torchvision's deprecation notice
            warnings.simplefilter("ignore")
            data = [torch.frombuffer(p.data, dtype=torch.uint8) for p in payloads]
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))

    @staticmethod
    def _checked(
        payloads: Sequence[JpegPayload], images: Sequence[torch.Tensor]
    ) -> list[torch.Tensor | DecodeFailed]:
        """A decode whose size is not the header's is corrupt, whatever the decoder said."""
        checked: list[torch.Tensor | DecodeFailed] = []
        for payload, image in zip(payloads, images):
            if tuple(image.shape) == (3, payload.height, payload.width):
                checked.append(image)
            else:
                got = "x".join(str(s) for s in image.shape)
                reason = (
                    f"corrupt JPEG data (decoded {got}, header {payload.width}x{payload.height})"
                )
                checked.append(DecodeFailed(payload.path, reason))
        return checked

    def _model_input(self, stack: torch.Tensor, batch: torch.Tensor, rows: list[int]) -> None:
        """Resize + centre crop (B, 3, h, w) uint8 of one oriented size into batch[rows]."""
        import torch

        h, w = stack.shape[-2:]
        out_h, out_w = self.spec.size
        new_w, new_h, resample = _resized_geometry(w, h, self.spec)
        left, keep_w, pad_left = _crop_or_pad(new_w, out_w)
        top, keep_h, pad_top = _crop_or_pad(new_h, out_h)
        mode = _TORCH_MODES[resample]
        region = stack.float()  # Pillow's two passes, horizontal first, each rounded to uint8
        if new_w != w:
            region = _resample_rows(region, new_w, mode)
        region = region[..., left : left + keep_w]  # the vertical pass keeps columns apart
        if new_h != h:
            region = _resample_rows(region.transpose(-2, -1), new_h, mode).transpose(-2, -1)
        region = region[..., top : top + keep_h, :].to(torch.uint8)
        index = torch.tensor(rows, device=batch.device)
        batch[index, :, pad_top : pad_top + keep_h, pad_left : pad_left + keep_w] = region


def _resample_rows(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Antialiased resample of the last axis of a float (..., n) tensor, rounded to 0..255.

    Every row goes in as a 1x1xn image, so the other axis costs one tap instead of four.
    """
    import torch.nn.functional as F

    lead = image.shape[:-1]
    rows = image.reshape(-1, 1, 1, image.shape[-1])
    out = F.interpolate(rows, size=(1, size), mode=mode, align_corners=False, antialias=True)
    return out.reshape(*lead, size).round_().clamp_(0, 255)


def _record(payload: JpegPayload) -> Decoded:
    """The Decoded for a payload whose pixels are in the device tensor."""
    width, height = payload.width, payload.height
    if payload.orientation >= 5:
        width, height = height, width
    return Decoded(
        path=payload.path,
        pixels=_NO_PIXELS,
        width=width,
        height=height,
        taken_at=payload.meta.taken_at,
        size=payload.size,
        mtime_ns=payload.mtime_ns,
        fingerprint=payload.fingerprint,
        meta=payload.meta,
    )


__all__ = ["DeviceDecoder", "JpegPayload", "device_supported", "orient", "prepare"]
