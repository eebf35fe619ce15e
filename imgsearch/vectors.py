"""The FAISS side of a library: build from stored vectors, save atomically, load and validate.

Exact inner-product search (IndexFlatIP) up to `exact_max` vectors, HNSW above it; ids are the
SQLite row ids (IndexIDMap2), so a hit always maps back to its row.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import sqlite3

    import numpy.typing as npt

log = logging.getLogger(__name__)
FILE_RE = re.compile(r"^vectors-(\d+)\.faiss$")


@dataclass
class VectorIndex:
    """A loaded FAISS index with ids = library row ids."""

    index: Any  # faiss.IndexIDMap2
    kind: str  # "flat" (exact) or "hnsw" (approximate)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        allowed: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, ids) per query row, among `allowed` ids if given; empty slots: id -1."""
        import faiss

        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.index.d)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            n = q.shape[0]
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(k, _ef(self.index)))
            else:
                params = faiss.SearchParameters(sel=selector)
        # One query is memory-bound: OpenMP threads only add contention (measured 3-5x slower
        # with 2 threads on 2 cores), so a single query runs on one thread.
        threads = faiss.omp_get_max_threads()
        if q.shape[0] == 1:
            faiss.omp_set_num_threads(1)
        try:
            return self.index.search(q, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)


def _ef(index: Any) -> int:
    import faiss

    inner = faiss.downcast_index(index.index)
    return int(inner.hnsw.efSearch) if hasattr(inner, "hnsw") else 16


def build(
    chunks: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    *,
    dim: int,
    exact_max: int,
    hnsw_m: int,
    hnsw_ef_search: int,
    total: int | None = None,
) -> VectorIndex:
    """Build an index from (ids, vectors) chunks: exact when the library is small, HNSW when big."""
    import faiss

    parts = list(chunks)
    n = total if total is not None else sum(len(ids) for ids, _ in parts)
    if dim <= 0:
        dim = parts[0][1].shape[1] if parts else 1
    if n > exact_max:
        inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = max(40, 2 * hnsw_m)
        inner.hnsw.efSearch = hnsw_ef_search
        kind = "hnsw"
    else:
        inner = faiss.IndexFlatIP(dim)
        kind = "flat"
    index = faiss.IndexIDMap2(inner)
    for ids, mat in parts:
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(mat, dtype=np.float32), ids)
    return VectorIndex(index, kind)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(folder: Path, vindex: VectorIndex, generation: int) -> str:
    """Write `vectors-<generation>.faiss` via a temp file and rename; returns the file name."""
    import faiss

    name = f"vectors-{generation}.faiss"
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        # faiss's own file writer ignores short writes (a full disk leaves a truncated file):
        # stream through Python, whose writes raise ENOSPC, and check the size before the rename.
        with open(tmp, "wb") as fh:
            writer = faiss.PyCallbackIOWriter(fh.write)
            faiss.write_index(vindex.index, writer)
            del writer
            fh.flush()
            os.fsync(fh.fileno())
            written = fh.tell()
        if os.path.getsize(tmp) != written or written == 0:
            raise OSError(errno.EIO, f"short write of {tmp}")
        os.replace(tmp, folder / name)
        _fsync_dir(folder)
    except RuntimeError as exc:  # faiss wraps the writer's OSError (ENOSPC ...) in RuntimeError
        tmp.unlink(missing_ok=True)
        cause = exc.__context__ if isinstance(exc.__context__, OSError) else None
        if cause is not None:
            raise cause from exc
        raise OSError(errno.EIO, f"cannot write {folder / name}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return name


def remove_stale_files(folder: Path, keep: str) -> None:
    """Delete older index files and leftovers of killed writers (readers keep open files alive)."""
    for entry in folder.iterdir():
        stale_tmp = entry.name.startswith(".vectors-") and entry.name.endswith(".tmp")
        if (FILE_RE.match(entry.name) and entry.name != keep) or stale_tmp:
            entry.unlink(missing_ok=True)


def load(folder: Path, meta: dict[str, str], cur: sqlite3.Cursor) -> VectorIndex | None:
    """The saved index if it matches SQLite (generation, count, spot-checked vectors), else None."""
    import faiss

    name = meta.get("faiss_file")
    if not name or meta.get("faiss_generation") != meta.get("generation", "0"):
        return None
    path = folder / name
    try:
        # mmap: a 100k-image index opens in milliseconds instead of being copied into memory
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    except (RuntimeError, OSError) as exc:
        log.warning("FAISS file %s unreadable (%s); rebuilding from SQLite", path, exc)
        return None
    count = cur.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0]
    if index.ntotal != count or str(index.ntotal) != meta.get("faiss_count"):
        log.warning(
            "FAISS file %s has %d vectors, SQLite %d; rebuilding", path, index.ntotal, count
        )
        return None
    if not isinstance(index, faiss.IndexIDMap2):  # read_index returns the concrete, owning type
        return None
    # Spot-check three stored vectors (first, last, one at random) against the file.
    offsets = sorted({0, count - 1, random.randrange(count)}) if count else []
    for offset in offsets:
        row_id, blob = cur.execute(
            "SELECT id, vector FROM images WHERE status = 'ok' ORDER BY id LIMIT 1 OFFSET ?",
            (offset,),
        ).fetchone()
        try:
            stored = index.reconstruct(int(row_id))
        except RuntimeError:
            return None
        if not np.allclose(stored, np.frombuffer(blob, dtype=np.float32), atol=1e-6):
            log.warning("FAISS file %s disagrees with SQLite for id %d; rebuilding", path, row_id)
            return None
    inner = faiss.downcast_index(index.index)
    return VectorIndex(index, "hnsw" if hasattr(inner, "hnsw") else "flat")
