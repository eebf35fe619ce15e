"""Thumbnails: an indexed image -> WebP bytes of a bounded size, made once and cached on disk.

Pictures open through imgsearch/decode.py's `open_image` (the same hostile-file checks as
indexing, EXIF orientation applied, JPEGs decoded at reduced size via draft mode). A cached file
is named by the image's content (fingerprint, size, mtime) and the thumbnail size, so a URL
that carries that key can be served as `immutable`. The cache is bounded: past its cap the least
recently used files are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from imgsearch.errors import ImgsearchError
from imgsearch.library import ImageDetail, Library

GRID = 256  # grid cells (about 2x a 128 px cell: sharp on HiDPI screens)
PREVIEW = 1440  # the photo page's large preview
SIZES = (GRID, PREVIEW)
QUALITY = {GRID: 78, PREVIEW: 85}
EVICT_TO = 0.9  # after eviction the cache holds at most this share of its cap


class ThumbnailError(ImgsearchError):
    """The picture cannot be made into a thumbnail (it changed, vanished or is damaged)."""


def content_key(image: ImageDetail, px: int) -> str:
    """The cache key of one thumbnail: changes whenever the file's bytes may have changed."""
    raw = f"{image.fingerprint}:{image.size}:{image.mtime_ns}:{px}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def default_folder(library: Path) -> Path:
    """The XDG cache dir's thumbnails for this library (derived data, safe to delete)."""
    from imgsearch.userdirs import user_dir

    tag = hashlib.sha256(str(library).encode()).hexdigest()[:12]
    return user_dir("cache") / "thumbs" / tag


def render(path: str, px: int, *, max_pixels: int) -> bytes:
    """One file -> WebP bytes fitting in px x px, oriented, with no metadata (EXIF, GPS, ICC)."""
    from PIL import Image

    from imgsearch.decode import DecodeError, open_image

    try:
        image = open_image(path, max_pixels=max_pixels, draft_to=(px, px))
    except DecodeError as exc:
        raise ThumbnailError(f"cannot make a thumbnail of {exc.path}: {exc.reason}") from exc
    image.thumbnail((px, px), Image.Resampling.LANCZOS, reducing_gap=3.0)
    image.info = {}  # nothing of the original's metadata travels into the thumbnail
    out = io.BytesIO()
    image.save(out, "WEBP", quality=QUALITY.get(px, 80), method=4)
    return out.getvalue()


class ThumbCache:
    """Thumbnails on disk under `folder`, at most `max_bytes`, made by a pool of `workers`."""

    def __init__(
        self, folder: Path, *, max_bytes: int, max_pixels: int, workers: int | None = None
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImgsearchError(
                f"cannot create the thumbnail cache {folder}: {exc.strerror}; set XDG_CACHE_HOME "
                f"to a writable folder"
            ) from exc
        self._pool = ThreadPoolExecutor(
            max_workers=workers or min(4, os.cpu_count() or 1), thread_name_prefix="thumbs"
        )
        self._lock = threading.Lock()
        self._pending: dict[str, Future[Path]] = {}
        self._bytes = sum(f.stat().st_size for f in self._files())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def file(self, image: ImageDetail, px: int) -> Path:
        """The cached thumbnail's path, made first if needed (one job per key at a time)."""
        if px not in SIZES:
            raise ValueError(f"thumbnail size must be one of {SIZES}, not {px}")
        key = content_key(image, px)
        target = self.folder / key[:2] / f"{key}.webp"
        if target.is_file():
            with contextlib.suppress(OSError):
                os.utime(target)  # recently used: evicted last
            return target
        with self._lock:
            job = self._pending.get(key)
            if job is None:
                job = self._pool.submit(self._make, image.path, px, target)
                self._pending[key] = job
                job.add_done_callback(lambda _f, key=key: self._forget(key))
        return job.result()

    def _target(self, image: ImageDetail, px: int) -> Path:
        key = content_key(image, px)
        return self.folder / key[:2] / f"{key}.webp"

    def warm(self, images: list[ImageDetail], px: int) -> tuple[int, int, list[tuple[str, str]]]:
        """Make the thumbnails of `images` not cached yet, in the pool: (made, cached, failed
        as (path, reason))."""
        todo = [i for i in images if not self._target(i, px).is_file()]
        jobs = [(i, self._pool.submit(self._make, i.path, px, self._target(i, px))) for i in todo]
        failed = []
        for image, job in jobs:
            try:
                job.result()
            except ThumbnailError as exc:
                failed.append((image.path, str(exc).rsplit(": ", 1)[-1]))
        return len(todo) - len(failed), len(images) - len(todo), failed

    def _forget(self, key: str) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _make(self, path: str, px: int, target: Path) -> Path:
        data = render(path, px, max_pixels=self.max_pixels)
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        with self._lock:
            self._bytes += len(data)
            over = self._bytes > self.max_bytes
        if over:
            self.evict()
        return target

    def _files(self) -> list[Path]:
        return [p for p in self.folder.glob("*/*.webp") if p.is_file()]

    def evict(self) -> int:
        """Delete least recently used thumbnails until the cache is under EVICT_TO of its cap."""
        with self._lock:
            entries = []
            for p in self._files():
                with contextlib.suppress(OSError):
                    st = p.stat()
                    entries.append((st.st_mtime_ns, st.st_size, p))
            entries.sort()
            total = sum(size for _, size, _ in entries)
            removed = 0
            for _, size, p in entries:
                if total <= self.max_bytes * EVICT_TO:
                    break
                with contextlib.suppress(OSError):
                    p.unlink()
                    total -= size
                    removed += 1
            self._bytes = total
            return removed

    @property
    def bytes(self) -> int:
        return self._bytes


def pregenerate(library: Library, *, max_bytes: int, max_pixels: int, px: int = GRID) -> tuple:
    """`index --thumbnails`: the grid thumbnails of every photo under the library's roots, made
    now into the cache `serve` reads: (made, already cached, failed as (path, reason))."""
    ids = [int(i) for r in library.roots() if r.kind == "root" for i in library.ids_under(r.path)]
    images = list(library.details(ids).values())
    cache = ThumbCache(default_folder(library.path), max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        return cache.warm(images, px)
    finally:
        cache.close()
