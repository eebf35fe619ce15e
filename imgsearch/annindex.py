"""The FAISS index derived from a library's vectors: loaded when valid, updated in place,
rebuilt when stale, saved atomically. It reads the library's vectors and writes only the
`faiss_*` meta keys; SQLite stays the truth.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from imgsearch import lazy
from imgsearch.ladder import Rung, choose, describe
from imgsearch.library import OK, wrap_db_error
from imgsearch.vectors import IndexParams, VectorIndex

if TYPE_CHECKING:
    import sqlite3

    import numpy as np
    import numpy.typing as npt

    from imgsearch.exactindex import MatrixIndex
    from imgsearch.library import Library
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py

log = logging.getLogger(__name__)
ADD_CHUNK = 65536  # vectors read and added at a time (fp32: 128 MB at 512-d)
NEAREST = "nearest"  # faiss_assign: every vector was added to its nearest centroid's list


def assigned(meta: dict[str, str]) -> bool:
    """False for an IVF-PQ file built before 2026-12-01's fix, whose build assigned vectors to
    lists by an HNSW walk over the centroids: 62% of 10M landed outside their nearest list,
    so a query missed them. Queries keep using such a file; the next `index` run rebuilds it."""
    return meta.get("faiss_kind") != "ivfpq" or meta.get("faiss_assign") == NEAREST


class DerivedIndex:
    """One library's search index, cached per (generation, params)."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._cache: tuple[int, IndexParams, VectorIndex] | None = None
        self._matrix: tuple[int, IndexParams, MatrixIndex] | None = None

    def current(self, params: IndexParams) -> VectorIndex:
        """The search index matching SQLite right now: the FAISS file when it is valid, else
        one derived in memory (a writer saves it with `save_vector_index`)."""
        from imgsearch import vectors

        with self.library.snapshot() as cur:
            meta = self.library.meta(cur)
            gen = int(meta.get("generation", "0"))
            if self._cache and self._cache[:2] == (gen, params):
                return self._cache[2]
            index = vectors.load(self.library.path, meta, cur, params) or self._derive(
                cur, meta, params
            )
        return self._keep(gen, params, index)

    def searchable(self, params: IndexParams) -> VectorIndex | MatrixIndex:
        """What a query searches: `current`, except that a valid flat-rung file is read and
        searched with numpy (imgsearch/exactindex.py): a cold query on a small library then
        never imports FAISS. Callers that need the FAISS object itself use `current`."""
        from imgsearch import exactindex

        with self.library.snapshot() as cur:
            meta = self.library.meta(cur)
            gen = int(meta.get("generation", "0"))
            if self._matrix and self._matrix[:2] == (gen, params):
                return self._matrix[2]
            if self._cache is None or self._cache[:2] != (gen, params):
                found = exactindex.load(self.library.path, meta, cur, params)
                if found is not None:
                    self._matrix = (gen, params, found)
                    return found
        return self.current(params)

    def _keep(self, gen: int, params: IndexParams, index: VectorIndex) -> VectorIndex:
        """Cache the index of generation `gen`; an IVF index re-ranks with vectors from here."""
        if index.kind != "flat":
            index.fetch = self.library.vectors_for_ids
        self._cache = (gen, params, index)
        return index

    def save(self, params: IndexParams) -> None:
        """Bring the FAISS file up to date with SQLite and swap it in atomically (writer only)."""
        from imgsearch import vectors

        with self.library.snapshot() as cur:
            meta = self.library.meta(cur)
            gen = int(meta.get("generation", "0"))
            name = meta.get("faiss_file")
            n = self.library.vector_count(cur)
            wanted = choose(n, int(meta.get("dim", "0") or 0), params).kind
            current = name and meta.get("faiss_generation") == str(gen)
            on_disk = bool(name) and (self.library.path / name).is_file()
            if current and meta.get("faiss_kind") == wanted and on_disk and assigned(meta):
                return  # nothing changed since the file was written
            index = self._derive(cur, meta, params, n)
        try:
            name = vectors.save(self.library.path, index, gen)
        except OSError as exc:
            raise wrap_db_error(self.library.path, exc) from exc
        with self.library.writing() as conn:
            self.library.set_meta_in(
                conn, faiss_file=name, faiss_generation=gen, faiss_count=index.ntotal,
                faiss_kind=index.kind, faiss_trained=index.trained_n or "",
                faiss_key=describe(index), faiss_assign=NEAREST,
            )  # fmt: skip
        vectors.remove_stale_files(self.library.path, keep=name)
        self._keep(gen, params, index)

    def _derive(
        self,
        cur: sqlite3.Cursor,
        meta: dict[str, str],
        params: IndexParams,
        n: int | None = None,
    ) -> VectorIndex:
        """The index for SQLite's current state: the saved IVF file updated with the vectors
        written since it while its lists still suit the size (up to 2x the trained size), else
        a fresh build (k-means for IVF)."""
        from imgsearch import vectors

        n = self.library.vector_count(cur) if n is None else n
        dim = int(meta.get("dim", "0") or 0)
        rung = choose(n, dim, params)
        if rung.kind == "flat":
            return vectors.build(self.library.vectors(cur), dim=dim, params=params, total=n)
        updated = self._update_saved(cur, meta, params, n, rung.kind)
        if updated is not None:
            return updated
        if rung.kind == "ivfpq":
            return self._build_ivfpq(cur, dim, n, rung, params)
        # Two passes, so memory holds the k-means sample and the 8-bit codes, never every float
        # vector (building a 100k library: peak RSS 709 MB holding them all, 418 MB like this).
        ok = cur.execute("SELECT id FROM images WHERE status = ? ORDER BY id", (OK,)).fetchall()
        ids = np.fromiter((r[0] for r in ok), dtype=np.int64, count=len(ok))
        wanted = ids[vectors.sample_positions(n)]
        sample = np.empty((len(wanted), int(meta.get("dim", "0") or 0)), np.float32)
        filled = 0
        for _, mat in self.library.vectors(cur, only=wanted):
            sample[filled : filled + len(mat)] = mat
            filled += len(mat)
        index = vectors.trained_ivf(sample[:filled], n, params)
        del sample
        vectors.update(index, np.empty(0, np.int64), self.library.vectors(cur, batch=8192))
        return index

    def _build_ivfpq(
        self, cur: sqlite3.Cursor, dim: int, n: int, rung: Rung, params: IndexParams
    ) -> VectorIndex:
        """IVF-PQ in bounded memory: k-means and codebooks on a sample read by id, then every
        vector added in chunks straight from storage (RAM: the sample, one chunk, the codes)."""
        from imgsearch import ladder

        wanted = self._sample_ids(cur, ladder.train_count(n, rung))
        sample = np.empty((len(wanted), dim), np.float32)
        filled = 0
        for _, mat in self.library.vectors(cur, only=wanted):
            sample[filled : filled + len(mat)] = mat
            filled += len(mat)
        log.info("training %s on %d of %d vectors", rung.key, filled, n)
        index, cents = ladder.trained_ivfpq(sample[:filled], n, rung, params)
        del sample
        ladder.add_chunks(index, cents, self.library.vectors(cur, batch=ADD_CHUNK))
        return index

    @staticmethod
    def _sample_ids(cur: sqlite3.Cursor, count: int) -> npt.NDArray[np.int64]:
        """About `count` stored ids drawn uniformly, without listing every id (at 10M a list
        costs a scan of the whole table): random ids between the smallest and largest, those
        that exist kept (ids freed by deletes make the sample a little smaller)."""
        low, high = cur.execute("SELECT min(id), max(id) FROM vectors").fetchone()
        if low is None:
            return np.empty(0, np.int64)
        span = int(high) - int(low) + 1
        if count >= span:
            return np.arange(int(low), int(high) + 1, dtype=np.int64)
        rng = np.random.default_rng(1234)
        return np.sort(rng.choice(span, count, replace=False)).astype(np.int64) + int(low)

    def _update_saved(
        self, cur: sqlite3.Cursor, meta: dict[str, str], params: IndexParams, n: int, kind: str
    ) -> VectorIndex | None:
        from imgsearch import vectors

        name, base = meta.get("faiss_file"), meta.get("faiss_generation")
        trained = int(meta.get("faiss_trained", "") or 0)
        if not name or base is None or meta.get("faiss_kind") != kind or n > 2 * trained:
            return None
        if not assigned(meta):
            log.warning("rebuilding the IVF-PQ index: its lists were assigned by an HNSW walk")
            return None
        raw = vectors.read(self.library.path / name, mmap=False)
        if raw is None or vectors.kind_of(raw) != kind or str(raw.d) != meta.get("dim"):
            return None
        index = vectors.VectorIndex(raw, kind, params, trained_n=trained)
        ok = cur.execute("SELECT id FROM images WHERE status = ?", (OK,)).fetchall()
        ok_ids = np.fromiter((r[0] for r in ok), dtype=np.int64, count=len(ok))
        changed = cur.execute(
            "SELECT id FROM images WHERE status = ? AND vector_gen > ?", (OK, int(base))
        ).fetchall()
        changed_ids = np.fromiter((r[0] for r in changed), dtype=np.int64, count=len(changed))
        have = vectors.ids_of(index)
        remove = np.union1d(np.setdiff1d(have, ok_ids), np.intersect1d(have, changed_ids))
        vectors.update(index, remove, self.library.vectors(cur, only=changed_ids))
        if index.ntotal != n:  # a row the bookkeeping missed: rebuild rather than guess
            log.warning("FAISS update left %d vectors for %d rows; rebuilding", index.ntotal, n)
            return None
        return index
