"""The FAISS side of a library: build from stored vectors, update, save atomically, load.

Exact inner-product search (IndexFlatIP) up to `exact_max` vectors; above it an IVF index with
8-bit codes whose candidates are re-scored exactly with the stored float vectors (see
benchmarks/ANN.md for the measurements behind the switch point and the parameters). Ids are the
SQLite row ids, so a hit always maps back to its row: IndexIDMap2 around the flat index, the
IVF index's own ids (IndexIDMap's removal assumes a flat index's renumbering and would scramble
an IVF's ids).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgsearch import lazy

if TYPE_CHECKING:
    import sqlite3

    import numpy as np
    import numpy.typing as npt

    from imgsearch.config import Settings

    Fetch = Callable[[npt.NDArray[np.int64]], tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py

log = logging.getLogger(__name__)
FILE_RE = re.compile(r"^vectors-(\d+)\.faiss$")
MIN_TRAIN_PER_LIST = 39  # faiss k-means wants >= 39 points per centroid (it warns below)
MAX_TRAIN_PER_LIST = 40


@dataclass(frozen=True)
class IndexParams:
    """How a library's FAISS index is built and searched (the settings of the same names)."""

    exact_max: int = 30_000
    nprobe: int = 64
    rerank: int = 4
    memory_budget: int = 4 << 30  # bytes the index may take (imgsearch/ladder.py)
    pq_rerank: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexParams:
        from imgsearch.config import parse_size

        return cls(
            settings.exact_search_max, settings.ivf_nprobe, settings.ivf_rerank,
            parse_size(settings.memory_budget), settings.pq_rerank,
        )  # fmt: skip


def nlist_for(n: int) -> int:
    """IVF list count: the power of two nearest 8 sqrt(n) (ANN.md: 100k -> 2048, 1M -> 8192),
    at most n / 39 so k-means has enough points per list."""
    target = 8 * math.sqrt(max(n, 1))
    nlist = 2 ** round(math.log2(target))
    while nlist > 1 and nlist * MIN_TRAIN_PER_LIST > n:
        nlist //= 2
    return max(nlist, 1)


@dataclass
class VectorIndex:
    """A loaded FAISS index with ids = library row ids.

    `fetch(ids) -> (ids, vectors)` reads stored float vectors; an IVF index uses it to re-score
    its `rerank * k` candidates exactly (8-bit codes only choose them) and to search a small
    `allowed` set exactly. Without it, IVF scores are the 8-bit approximations.
    """

    index: Any  # faiss.IndexIDMap2 (flat), IndexIVFScalarQuantizer or IndexIVFPQ
    kind: str  # "flat" (exact), "ivf" (IVF-SQ8) or "ivfpq" (approximate; imgsearch/ladder.py)
    params: IndexParams = IndexParams()
    fetch: Fetch | None = None
    trained_n: int | None = None  # IVF: the library size its k-means was trained for
    lists: Any = None  # IVF: row id -> list number (`list_of`), built on first filtered search

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
            return _empty(q.shape[0], k)
        approximate = self.kind != "flat"
        small = allowed is not None and len(allowed) <= min(self.params.exact_max, EXACT_SUBSET)
        if approximate and small and self.fetch is not None:  # exact is faster here, and exact
            return _exact_among(q, k, *self.fetch(np.asarray(allowed, dtype=np.int64)))
        selector, keep = None, None
        if allowed is not None:
            selector, keep = _selector(np.asarray(allowed, dtype=np.int64))
        wanted = k
        if approximate:
            from imgsearch.ladder import search_params

            times = self.params.pq_rerank if self.kind == "ivfpq" else self.params.rerank
            wanted = min(self.ntotal, k * max(1, times)) if self.fetch else k
            nprobe = _filtered_nprobe(self, None if allowed is None else len(allowed))
            params: Any = search_params(self, selector, nprobe)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        if q.shape[0] == 1:
            single_query_threads()
        scores, ids = self.index.search(q, wanted, params=params)
        del keep  # the selector's bitmap lives until the search is done
        if approximate and self.fetch is not None:
            return self._rerank(q, k, ids)
        return scores, ids

    def _rerank(
        self, q: npt.NDArray[np.float32], k: int, candidates: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Exact scores for each row's candidates, best k kept."""
        assert self.fetch is not None
        out_s, out_i = _empty(q.shape[0], k)
        ids, mat = self.fetch(np.unique(candidates[candidates >= 0]))
        for r in range(q.shape[0]):
            mine = np.isin(ids, candidates[r])
            scores, best = _exact_among(q[r : r + 1], k, ids[mine], mat[mine])
            out_s[r], out_i[r] = scores[0], best[0]
        return out_s, out_i


# Filtered IVF search (benchmarks/ANN.md, "Filtered search"): up to EXACT_SUBSET allowed ids
# are scored exactly from their stored vectors (reading more from SQLite cost ~45 us each on
# the busy VM: 46 ms for 1,000); above, the IVF probes nprobe x selectivity^-FILTERED_POWER
# lists (imgsearch/filtered.py: only lists holding an allowed id), and a bitmap over row ids
# tells faiss which codes are allowed. nprobe / selectivity (as many allowed codes as an
# unfiltered search scans) was measured at 1M to be far more than recall needs: at 0.1%
# recall@10 0.993 with 2048 lists, at 1% 1.000 with 1024 (ANN.md, "Filtered search at 1M").
EXACT_SUBSET = 256
FILTERED_POWER = 0.6


def filtered_nprobe(index: VectorIndex, allowed: int, wanted: int = 0) -> int:
    """Lists to probe for `wanted` candidates among `allowed` ids: nprobe x selectivity^-0.6,
    and enough lists to hold about 2 x wanted allowed codes."""
    import faiss

    nlist = faiss.extract_index_ivf(index.index).nlist
    nprobe = index.params.nprobe
    if allowed >= index.ntotal:
        return min(nprobe, nlist)
    selectivity = max(allowed, 1) / max(index.ntotal, 1)
    rule = math.ceil(nprobe * selectivity**-FILTERED_POWER)
    enough = math.ceil(2 * wanted * nlist / max(allowed, 1))
    return min(nlist, max(rule, enough))


def _filtered_nprobe(index: VectorIndex, allowed: int | None) -> int:
    import faiss

    if allowed is None:
        return min(index.params.nprobe, faiss.extract_index_ivf(index.index).nlist)
    return filtered_nprobe(index, allowed)


def list_of(index: VectorIndex) -> npt.NDArray[np.int32] | None:
    """Row id -> IVF list number (-1: not in the index), built once per loaded index (1M:
    4 MB); None for ids too sparse for an array."""
    import faiss

    if index.lists is None:
        ivf = faiss.extract_index_ivf(index.index)
        parts, numbers = [], []
        for number in range(ivf.nlist):
            size = ivf.invlists.list_size(number)
            if size:
                ptr = ivf.invlists.get_ids(number)
                parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64))
                ivf.invlists.release_ids(number, ptr)
                numbers.append(np.full(size, number, np.int32))
        ids = np.concatenate(parts) if parts else np.empty(0, np.int64)
        top = int(ids.max()) + 1 if len(ids) else 1
        if top > 8 * len(ids) + 1_000_000:
            index.lists = False
        else:
            where = np.full(top, -1, np.int32)
            where[ids] = np.concatenate(numbers) if numbers else np.empty(0, np.int32)
            index.lists = where
    return index.lists if index.lists is not False else None


def _selector(allowed: npt.NDArray[np.int64]) -> tuple[Any, Any]:
    """A faiss selector for `allowed` and the buffer it reads (keep it alive while searching):
    a bitmap over 0..max id (ids are SQLite row ids: dense), faster to build and test than a
    hash set; a batch selector for sparse ids."""
    import faiss

    if len(allowed) == 0:
        return faiss.IDSelectorBatch(allowed), None
    top = int(allowed.max()) + 1
    if top > 64 * len(allowed) + 8_000_000:  # sparse: the bitmap would be mostly zeros
        return faiss.IDSelectorBatch(np.ascontiguousarray(allowed)), None
    mask = np.zeros(top, dtype=bool)
    mask[allowed] = True
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits  # n: bytes


_threads_set = False


def single_query_threads() -> None:
    """One query is memory-bound: OpenMP threads only add contention (measured 3-5x slower
    with 2 threads on 2 cores), so a process that searches runs FAISS on one thread. Set once
    (the setting is process-wide: flipping it per call races between a server's threads)."""
    global _threads_set
    if not _threads_set:
        import faiss

        faiss.omp_set_num_threads(1)
        _threads_set = True


def _empty(n: int, k: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)


def _exact_among(
    q: npt.NDArray[np.float32], k: int, ids: npt.NDArray[np.int64], mat: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    out_s, out_i = _empty(q.shape[0], k)
    if len(ids) == 0:
        return out_s, out_i
    scores = q @ mat.T
    for r in range(q.shape[0]):
        best = np.argsort(-scores[r], kind="stable")[:k]
        out_s[r, : len(best)] = scores[r, best]
        out_i[r, : len(best)] = ids[best]
    return out_s, out_i


def kind_of(index: Any) -> str:
    """'ivfpq', 'ivf' or 'flat' (an IndexIDMap2 around IndexFlatIP, or an older HNSW file)."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return "flat"
    return "ivfpq" if isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ) else "ivf"


def build(
    chunks: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    *,
    dim: int,
    params: IndexParams,
    total: int | None = None,
) -> VectorIndex:
    """Build an index from (ids, vectors) chunks held in memory: exact when the library is
    small, IVF-SQ8 when big. (Library builds big ones in two passes over SQLite instead.)"""
    import faiss

    parts = list(chunks)
    n = total if total is not None else sum(len(ids) for ids, _ in parts)
    if dim <= 0:
        dim = parts[0][1].shape[1] if parts else 1
    if n > params.exact_max:
        picks = sample_positions(n)
        sample = np.empty((len(picks), dim), np.float32)
        filled, offset = 0, 0
        for _ids, mat in parts:  # gather the sample from the chunks without concatenating them
            lo = np.searchsorted(picks, offset)
            hi = np.searchsorted(picks, offset + len(mat))
            sample[filled : filled + hi - lo] = mat[picks[lo:hi] - offset]
            filled += hi - lo
            offset += len(mat)
        index = trained_ivf(sample[:filled], n, params)
    else:
        index = VectorIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat", params)
    update(index, np.empty(0, np.int64), parts)
    return index


def sample_positions(n: int) -> npt.NDArray[np.int64]:
    """Sorted positions (0..n-1) of the vectors k-means trains on: 40 per IVF list at most."""
    rng = np.random.default_rng(1234)
    return np.sort(rng.choice(n, min(n, MAX_TRAIN_PER_LIST * nlist_for(n)), replace=False))


def trained_ivf(sample: npt.NDArray[np.float32], n: int, params: IndexParams) -> VectorIndex:
    """An empty IVF-SQ8 index for a library of n vectors: spherical k-means on `sample` for the
    lists, 8-bit ranges fitted on the same sample."""
    import faiss

    dim, nlist = sample.shape[1], nlist_for(n)
    kmeans = faiss.Kmeans(dim, nlist, niter=10, spherical=True, seed=1234)
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(kmeans.centroids)
    ivf = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    ivf.train(sample)  # the quantizer is trained: this fits the 8-bit ranges only
    # the Python wrapper keeps `quantizer` alive (faiss's referenced_objects)
    return VectorIndex(ivf, "ivf", params, trained_n=n)


def update(
    index: VectorIndex,
    remove: npt.NDArray[np.int64],
    chunks: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
) -> None:
    """In place: drop `remove` ids, then add the chunks (ids must not be present any more)."""
    import faiss

    index.lists = None  # the id -> list map is rebuilt on next need

    if len(remove):
        index.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(remove, np.int64)))
    for ids, mat in chunks:
        if len(ids):
            index.index.add_with_ids(np.ascontiguousarray(mat, dtype=np.float32), ids)


def ids_of(index: VectorIndex) -> npt.NDArray[np.int64]:
    """Every id in the index (unordered)."""
    import faiss

    if index.kind == "flat":
        return faiss.vector_to_array(index.index.id_map).astype(np.int64, copy=False)
    ivf = faiss.extract_index_ivf(index.index)
    lists = ivf.invlists
    parts = [np.empty(0, np.int64)]
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size:
            ptr = lists.get_ids(number)
            parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64))  # a copy
            lists.release_ids(number, ptr)
    return np.concatenate(parts)


def holds(index: VectorIndex, row_id: int, vector: npt.NDArray[np.float32]) -> bool:
    """Whether an IVF index holds `row_id`: first in the list its vector is assigned to (one
    list read), else in all of them (every id: 80 MB at 10M)."""
    import faiss

    ivf = faiss.extract_index_ivf(index.index)
    _, lists = ivf.quantizer.search(vector.reshape(1, -1), 1)
    number = int(lists[0, 0])
    if number >= 0:
        size = ivf.invlists.list_size(number)
        if size:
            ptr = ivf.invlists.get_ids(number)
            found = row_id in faiss.rev_swig_ptr(ptr, size)
            ivf.invlists.release_ids(number, ptr)
            if found:
                return True
    return bool(np.isin(row_id, ids_of(index)))


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


def read(path: Path, *, mmap: bool, ondisk: bool = False) -> Any | None:
    """The index in `path` (flat in an IndexIDMap2, or IVF), or None (logged) if unreadable.
    `ondisk` (the IVF-PQ rung): its inverted lists stay in the file, read through
    OnDiskInvertedLists (IO_FLAG_MMAP), so a query process holds only the pages it touches."""
    import faiss

    try:
        # mmap: a big index opens in milliseconds instead of being copied into memory
        flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if ondisk else 0
        index = faiss.read_index(str(path), flags or (faiss.IO_FLAG_MMAP_IFC if mmap else 0))
    except (RuntimeError, OSError) as exc:
        log.warning("FAISS file %s unreadable (%s); rebuilding from SQLite", path, exc)
        return None
    # read_index returns the concrete, owning type
    return index if isinstance(index, (faiss.IndexIDMap2, faiss.IndexIVF)) else None


def spot_rows(cur: sqlite3.Cursor, count: int) -> list[tuple[int, bytes]]:
    """Three stored (id, blob) rows, the first, the last and one at random, to check a saved
    index against. Found by id, not OFFSET: at 10M an offset walks gigabytes."""
    if not count:
        return []
    low, high = cur.execute("SELECT min(id), max(id) FROM vectors").fetchone()
    if low is None:
        return []
    picks = sorted({low, high, random.randint(low, high)})
    sql = "SELECT id, vector FROM vectors WHERE id >= ? ORDER BY id LIMIT 1"
    return [cur.execute(sql, (pick,)).fetchone() for pick in picks]


def file_matches(meta: dict[str, str]) -> bool:
    """True when the meta names an index file written for SQLite's current generation."""
    return bool(meta.get("faiss_file")) and meta.get("faiss_generation") == meta.get(
        "generation", "0"
    )


def load(
    folder: Path, meta: dict[str, str], cur: sqlite3.Cursor, params: IndexParams
) -> VectorIndex | None:
    """The saved index if it matches SQLite (generation, count, spot-checked rows), else None."""
    from imgsearch.library import decode, vector_dtype

    if not file_matches(meta):
        return None
    path = folder / meta["faiss_file"]
    index = read(path, mmap=True, ondisk=meta.get("faiss_kind") == "ivfpq")
    if index is None:
        return None
    count = int(meta.get("vector_count") or 0)  # = the 'ok' images (0007's triggers)
    if index.ntotal != count or str(index.ntotal) != meta.get("faiss_count"):
        log.warning(
            "FAISS file %s has %d vectors, SQLite %d; rebuilding", path, index.ntotal, count
        )
        return None
    trained = int(meta.get("faiss_trained", "") or 0) or None
    found = VectorIndex(index, kind_of(index), params, trained_n=trained)
    # Spot-check stored rows against the file: the exact vector for a flat index, the id's
    # presence for IVF (its codes are approximations).
    spots = spot_rows(cur, count)
    if found.kind != "flat":
        dtype = vector_dtype(meta)
        missing = [
            row_id for row_id, blob in spots if not holds(found, row_id, decode(blob, dtype))
        ]
        if missing:
            log.warning("FAISS file %s lacks id %d; rebuilding", path, missing[0])
            return None
        return found
    for row_id, blob in spots:
        try:
            stored = index.reconstruct(int(row_id))
        except RuntimeError:
            return None
        if not np.allclose(stored, decode(blob, vector_dtype(meta)), atol=1e-6):
            log.warning("FAISS file %s disagrees with SQLite for id %d; rebuilding", path, row_id)
            return None
    return found
