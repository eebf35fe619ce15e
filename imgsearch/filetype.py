"""File bytes -> what kind of image file it is, and a partial content fingerprint: shared by
the walk (indexer/walk.py) and the decoder (imgsearch/decode.py), which the query path uses
too, so it lives below both."""

from __future__ import annotations

import hashlib
import os
import stat

# Camera RAW files are taken by the walk so that they are counted and reported as unsupported
# (imgsearch/decode.py), not silently passed over.
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
SNIFF_BYTES = 32
FINGERPRINT_CHUNK = 64 * 1024

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff_format(head: bytes) -> str | None:
    """Name the supported image format from a file's first bytes, or None: content, not name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if head[4:8] == b"ftyp":
        brands = {head[i : i + 4] for i in range(8, min(len(head), 32) - 3, 4)} - {head[12:16]}
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


_UNSUPPORTED_MAGIC = (
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"8BPS", "Photoshop PSD"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "PostScript"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"\x00\x00\x01\x00", "ICO"),
)


def sniff_unsupported(head: bytes) -> str | None:
    """Name a known format we do not index (for a precise skip reason), or None."""
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return f"ISO media file (brand {head[8:12].decode('latin-1').strip()!r})"
    return None


def fingerprint_fd(fd: int, size: int) -> str:
    """Partial content hash of an open file (size + first and last 64 KiB), without seeking."""
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    if size <= 2 * FINGERPRINT_CHUNK:
        digest.update(os.pread(fd, size, 0))
    else:
        digest.update(os.pread(fd, FINGERPRINT_CHUNK, 0))
        digest.update(os.pread(fd, FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
    return digest.hexdigest()


def fingerprint(path: str, size: int) -> str:
    """Partial content hash for move detection: a renamed file keeps it, an edit changes it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fingerprint_fd(fd, size)
    finally:
        os.close(fd)


def describe_file_type(mode: int) -> str:
    """'named pipe', 'socket', ... for messages about files that are not regular."""
    for test, word in (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return word
    return "special file"
