"""A hostile/odd-input corpus generated on the fly (nothing binary is committed).

`make_hostile_corpus(root)` writes every case under `root` (plus a sibling `<root>-outside`
folder that symlinks point into) and returns what each case should do in walk and decode.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RED = (255, 0, 0)
# The upright picture of the orientation cases: 80x48, red block in the top-left corner.
ORIENTED_SIZE = (80, 48)
RED_BLOCK = (32, 20)
# Transpose that turns the upright picture into what is stored for EXIF orientation n.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class CorpusCase:
    """One file (or link/pipe/folder) of the corpus and what indexing it should give."""

    relpath: str
    valid: bool  # decode() returns Decoded
    note: str
    expect_reason: str | None = None  # substring of DecodeFailed.reason when not valid
    walked: bool = True  # scan(root) with default options yields it
    unprivileged: bool = False  # valid/walked/reason hold for a non-root user only


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Busy RGB content, so that JPEG/PNG data is long enough to be cut in half."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def upright_picture() -> Image.Image:
    """The reference for orientation cases: grey with a red block at the top-left."""
    image = Image.new("RGB", ORIENTED_SIZE, (40, 160, 40))
    image.paste(RED, (0, 0, *RED_BLOCK))
    return image


def oriented_jpeg(orientation: int) -> bytes:
    """A JPEG whose pixels are stored so that EXIF `orientation` shows upright_picture()."""
    stored = upright_picture()
    if _STORE[orientation] is not None:
        stored = stored.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid single-colour 1-bit PNG of width x height: ~110 KB on disk, 900 MP declared."""
    row = b"\x00" + bytes((width + 7) // 8)
    packer = zlib.compressobj(9)
    block = row * 1000
    parts = [packer.compress(block) for _ in range(height // 1000)]
    parts += [packer.compress(row * (height % 1000)), packer.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def corrupt_exif_jpeg() -> bytes:
    """A fine JPEG whose APP1 Exif block is garbage (bad offsets, looping IFD)."""
    body = _encode(Image.new("RGB", (64, 48), (20, 40, 200)), "JPEG")
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x02" + b"\x01\x12\x00\x03\xff\xff\xff\xff"
    tiff += b"\x87\x69\x00\x04\x00\x00\x00\x01\x00\x00\x00\x08" + b"\xde\xad\xbe\xef" * 4
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return body[:2] + segment + body[2:]


def _animated(fmt: str) -> bytes:
    """Three frames: red, green, blue; decoding must take the first (red)."""
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, (0, 255, 0), (0, 0, 255))]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _grey16_png() -> bytes:
    """16-bit greyscale ramp 0..65535: Pillow's convert('RGB') would clip it to white."""
    ramp = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    return _encode(Image.fromarray(ramp), "PNG")


def _palette_transparent_png() -> bytes:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 16, 32))  # left half red, right half transparent index 0
    return _encode(image, "PNG", transparency=0)


def _files(outside: Path) -> list[tuple[CorpusCase, bytes | None]]:
    """Every regular-file case with its bytes."""
    plain = _encode(_noise(120, 90), "JPEG", quality=90)
    png = _encode(_noise(120, 90, seed=1), "PNG")
    ok = "valid image"
    cases: list[tuple[CorpusCase, bytes | None]] = [
        (CorpusCase("plain.jpg", True, ok), plain),
        (CorpusCase("png_named.jpg", True, "PNG content named .jpg"), png),
        (CorpusCase("jpeg_named.png", True, "JPEG content named .png"), plain),
        (CorpusCase("noext_jpeg", True, "JPEG without extension (sniffed)"), plain),
        (CorpusCase("notes.txt", True, "JPEG named .txt: never opened", walked=False), plain),
        (CorpusCase("cmyk.jpg", True, "CMYK JPEG (cyan)"), _cmyk_jpeg()),
        (CorpusCase("grey16.png", True, "16-bit greyscale ramp"), _grey16_png()),
        (CorpusCase("palette_transparent.png", True, "P + tRNS"), _palette_transparent_png()),
        (CorpusCase("la.png", True, "LA, half transparent"), _la_png()),
        (CorpusCase("rgba.png", True, "RGBA, fully transparent"), _rgba_png()),
        (CorpusCase("animated.gif", True, "3 frames, first red"), _animated("GIF")),
        (CorpusCase("animated.webp", True, "3 frames, first red"), _animated("WEBP")),
        (CorpusCase("bitmap.bmp", True, ok), _encode(_noise(20, 10), "BMP")),
        (CorpusCase("scan.tiff", True, ok), _encode(_noise(20, 10), "TIFF")),
        (CorpusCase("wide.png", True, "20000x10"), _encode(_noise(20000, 10), "PNG")),
        (CorpusCase("tiny.png", True, "1x1"), _encode(Image.new("RGB", (1, 1), RED), "PNG")),
        (CorpusCase("corrupt_exif.jpg", True, "garbage Exif block"), corrupt_exif_jpeg()),
        (CorpusCase("name with spaces.jpg", True, "spaces"), plain),
        (CorpusCase("unicode_äöü_日本.jpg", True, "unicode"), plain),
        (CorpusCase("emoji_📷.jpg", True, "emoji"), plain),
        (CorpusCase("new\nline.jpg", True, "newline in name"), plain),
        (CorpusCase("photo.jpg/inside.png", True, "inside a folder named photo.jpg"), png),
        (CorpusCase(".hidden.jpg", True, "hidden file", walked=False), plain),
        (CorpusCase("@eaDir/thumb.jpg", True, "NAS thumbnail folder", walked=False), plain),
        (CorpusCase("empty.jpg", False, "zero bytes", "empty file"), b""),
        (
            CorpusCase("truncated.jpg", False, "JPEG cut in half", "truncated"),
            plain[: len(plain) // 2],
        ),
        (CorpusCase("truncated.png", False, "PNG cut in half", "truncated"), png[: len(png) // 2]),
        (CorpusCase("random.jpg", False, "random bytes", "not an image"), os.urandom(4096)),
        (CorpusCase("text.png", False, "plain text", "not an image"), b"hello, world\n" * 20),
        (CorpusCase("README", False, "text, no extension", "not an image", walked=False), b"hi"),
        (CorpusCase("drawing.png", False, "SVG named .png", "unsupported format: SVG"), _SVG),
        (CorpusCase("header.png", False, "PNG signature + junk", "corrupt"), png[:8] + b"x" * 64),
        (CorpusCase("bomb.png", False, "30000x30000 PNG", "too large"), bomb_png()),
    ]
    cases += [
        (CorpusCase(f"orientation_{n}.jpg", True, f"EXIF orientation {n}"), oriented_jpeg(n))
        for n in range(1, 9)
    ]
    (outside / "dir").mkdir(parents=True, exist_ok=True)
    (outside / "outside.jpg").write_bytes(plain)
    (outside / "dir" / "deep.png").write_bytes(png)
    return cases


_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>\n'


def _cmyk_jpeg() -> bytes:
    return _encode(Image.new("CMYK", (40, 30), (255, 0, 0, 0)), "JPEG", quality=95)


def _la_png() -> bytes:
    alpha = np.zeros((30, 40), np.uint8)
    alpha[:, :20] = 255
    grey = np.full((30, 40), 250, np.uint8)
    return _encode(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG")


def _rgba_png() -> bytes:
    return _encode(Image.new("RGBA", (30, 30), (255, 0, 0, 0)), "PNG")


def make_hostile_corpus(root: Path) -> list[CorpusCase]:
    """Write the corpus under `root` (created) and `<root>-outside`; return its cases."""
    root.mkdir(parents=True, exist_ok=True)
    outside = root.parent / f"{root.name}-outside"
    cases = []
    for case, data in _files(outside):
        path = root / case.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        cases.append(case)
    os.symlink(outside / "outside.jpg", root / "link_outside.jpg")
    os.symlink(outside / "dir", root / "linked_dir")
    os.symlink(root / "does-not-exist.jpg", root / "broken_link.jpg")
    (root / "loops").mkdir()
    os.symlink("..", root / "loops" / "back")
    os.mkfifo(root / "pipe.jpg")
    (root / "unreadable.jpg").write_bytes((root / "plain.jpg").read_bytes())
    os.chmod(root / "unreadable.jpg", 0)
    (root / "locked").mkdir()
    (root / "locked" / "secret.jpg").write_bytes((root / "plain.jpg").read_bytes())
    os.chmod(root / "locked", 0)
    cases += [
        CorpusCase("link_outside.jpg", True, "symlink to a file outside the tree"),
        CorpusCase("linked_dir/deep.png", True, "symlinked folder outside the tree"),
        CorpusCase(
            "broken_link.jpg", False, "dangling symlink", "broken symbolic link", walked=False
        ),
        CorpusCase("pipe.jpg", False, "FIFO named .jpg", "not a regular file", walked=False),
        CorpusCase("unreadable.jpg", False, "chmod 000", "permission denied", unprivileged=True),
        CorpusCase(
            "locked/secret.jpg",
            False,
            "inside a chmod 000 folder",
            "permission denied",
            walked=False,
            unprivileged=True,
        ),
    ]
    return cases


def rewrite(path: Path, color: tuple[int, int, int] = (0, 0, 255)) -> None:
    """Replace a file in place with another picture (new size, content and mtime)."""
    data = _encode(Image.new("RGB", (50, 40), color), "PNG")
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


REPO_ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@contextlib.contextmanager
def world_readable_corpus() -> Iterator[tuple[Path, list[CorpusCase]]]:
    """The corpus in a fresh 0755 temp folder (pytest's are 0700), so 'nobody' can walk it."""
    base = Path(tempfile.mkdtemp(prefix="imgsearch-corpus-"))
    base.chmod(0o755)
    try:
        yield base / "root", make_hostile_corpus(base / "root")
    finally:
        for folder, _dirs, _files in os.walk(base):
            os.chmod(folder, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def run_unprivileged(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run Python `code` as a user without root's bypass of file permissions.

    Run as root, the child imports indexer (and Pillow's plugins) first, then drops to
    uid/gid 65534 ('nobody'): the interpreter itself lives under /root, unreadable to nobody.
    """
    drop = f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
    preamble = (
        "import json, os, sys\n"
        "import imgsearch.decode, indexer.walk\n"
        "imgsearch.decode._setup()\n" + (drop if os.geteuid() == 0 else "")
    )
    return subprocess.run(
        [sys.executable, "-c", preamble + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
