"""The photo sets the suite runs on: the given folder, a 12-megapixel copy, replicated trees.

Everything generated lives in a cache folder outside the repository (default
~/.cache/imgsearch-bench) and is reused by later runs.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from indexer.walk import scan

DEFAULT_CACHE = Path.home() / ".cache" / "imgsearch-bench"
LONG_SIDE_12MP = 4000  # a 3:2 photo with a 4000 px long side is 4000 x 2667 = 10.7 MP .. 12 MP
QUALITY_12MP = 90
TINY_SIDE = 64


def photos(folder: Path, limit: int | None = None) -> list[Path]:
    """The image files `imgsearch index FOLDER` would see, in its walk order (at most `limit`)."""
    found = [Path(e.path) for e in scan([str(folder)])]
    return found[:limit] if limit else found


def warm_page_cache(paths: list[Path]) -> int:
    """Read every file once so that no measurement pays for the first disk read; bytes read."""
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    return total


def evict_page_cache(paths: list[Path]) -> None:
    """Ask the kernel to drop these files' cached pages (POSIX_FADV_DONTNEED; no root needed)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def _upscale(src: Path, dest: Path, long_side: int, quality: int) -> None:
    """One photo, stored pixels scaled so the long side is `long_side` (EXIF kept), as JPEG."""
    with Image.open(src) as im:
        exif = im.info.get("exif")
        scale = long_side / max(im.size)
        size = (round(im.width * scale), round(im.height * scale))
        if im.mode not in ("RGB", "L", "CMYK"):
            im = im.convert("RGB")
        big = im.resize(size, Image.Resampling.BICUBIC)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    big.save(tmp, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    os.replace(tmp, dest)


def make_12mp(
    sources: list[Path],
    cache: Path = DEFAULT_CACHE,
    *,
    long_side: int = LONG_SIDE_12MP,
    quality: int = QUALITY_12MP,
    workers: int | None = None,
) -> list[Path]:
    """12-megapixel JPEG copies of `sources` under cache/12mp (made once, then reused)."""
    folder = cache / f"12mp-{long_side}-q{quality}"
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / f"{i:05d}-{src.stem}.jpg" for i, src in enumerate(sources)]
    todo = [(s, t) for s, t in zip(sources, targets) if not t.is_file()]
    if todo:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            futures = [pool.submit(_upscale, s, t, long_side, quality) for s, t in todo]
            for fut in futures:
                fut.result()
    return targets


def subset_folder(files: list[Path], dest: Path) -> Path:
    """A folder holding exactly `files` (symlinks), so `imgsearch index` sees only them."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in files:
        (dest / f.name).symlink_to(f.resolve())
    return dest


def replicate(files: list[Path], dest: Path, copies: int) -> Path:
    """`copies` real copies of `files` in dest/copy-N/ (separate inodes: hard links count once).
    Each copy ends with its copy number after the image data, which decoders ignore: the bytes
    differ, so `index` embeds every copy instead of reusing the first one's vector as an exact
    copy (indexer/copies.py), and the run measures N photos' worth of work."""
    marker = dest / f".complete-{len(files)}x{copies}-distinct"
    if marker.is_file():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    for i in range(copies):
        sub = dest / f"copy-{i}"
        sub.mkdir(parents=True)
        for f in files:
            (sub / f.name).write_bytes(f.read_bytes() + f"\0imgsearch-copy-{i}".encode())
    marker.touch()
    return dest


def _thumbnail(src: Path, dest: Path) -> None:
    with Image.open(src) as im:
        im.draft("RGB", (TINY_SIDE, TINY_SIDE))
        im = im.convert("RGB")
        im.thumbnail((TINY_SIDE, TINY_SIDE))
        im.save(dest, "JPEG", quality=80)


def tiny_tree(sources: list[Path], cache: Path, total: int) -> Path:
    """`total` small JPEG files (thumbnails of `sources`, copied) in folders of 1000."""
    dest = cache / f"tree-{total}"
    marker = dest / f".complete-{len(sources)}"
    if marker.is_file():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    thumbs = cache / f"thumbs-{TINY_SIDE}"
    thumbs.mkdir(parents=True, exist_ok=True)
    small = []
    for src in sources:
        t = thumbs / f"{src.stem}.jpg"
        if not t.is_file():
            _thumbnail(src, t)
        small.append(t)
    for i in range(total):
        sub = dest / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        src = small[i % len(small)]
        shutil.copyfile(src, sub / f"{i:06d}-{src.name}")
    marker.touch()
    return dest
