"""Exact search without FAISS: the flat rung's index file read and searched with numpy.

A cold `imgsearch query` on a small library spent ~40 ms importing FAISS to multiply one
vector by a few thousand (benchmarks/peers.py, `cold_query_s`). The flat rung's file is an
`IndexIDMap2` around an `IndexFlatIP`, which FAISS writes as two fixed headers, the float
matrix and the id list (faiss/impl/index_write.cpp). This module reads that layout with numpy,
checking every field and the exact file size; anything else (another FAISS version's layout, an
IVF file, a truncated file) returns None and the caller loads the file with FAISS as before.
`tests/test_exactindex.py` checks it against FAISS on every save path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgsearch import lazy
from imgsearch.vectors import IndexParams, _exact_among

if TYPE_CHECKING:
    import sqlite3

    import numpy as np
    import numpy.typing as npt
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py

# write_index_header: d (int32), ntotal (int64), two int64 dummies, is_trained (uint8), metric
# (int32; METRIC_INNER_PRODUCT = 0, which writes no metric_arg)
_HEADER = struct.Struct("<iqqqBi")
_DUMMY = 1 << 20
_IDMAP2, _FLAT_IP = b"IxM2", b"IxFI"


def read_flat(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
    """(ids, vectors) of a flat inner-product index file, or None if it is not exactly one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4 + _HEADER.size + 4 + _HEADER.size + 8)
            if len(head) != 4 + 2 * _HEADER.size + 4 + 8:
                return None
            if head[:4] != _IDMAP2 or head[4 + _HEADER.size : 8 + _HEADER.size] != _FLAT_IP:
                return None
            outer = _HEADER.unpack_from(head, 4)
            inner = _HEADER.unpack_from(head, 8 + _HEADER.size)
            (floats,) = struct.unpack_from("<Q", head, 8 + 2 * _HEADER.size)
            d, n = outer[0], outer[1]
            if outer != inner or outer[2:] != (_DUMMY, _DUMMY, 1, 0) or d <= 0 or n < 0:
                return None
            if floats != n * d:
                return None
            mat = np.fromfile(fh, dtype="<f4", count=n * d)
            (count,) = struct.unpack("<Q", fh.read(8) or b"\xff" * 8)
            if count != n:
                return None
            ids = np.fromfile(fh, dtype="<i8", count=n)
            if len(mat) != n * d or len(ids) != n or fh.read(1):
                return None
    except (OSError, struct.error):
        return None
    return ids.astype(np.int64, copy=False), mat.astype(np.float32, copy=False).reshape(n, d)


@dataclass
class MatrixIndex:
    """The flat rung held as a numpy matrix: the `VectorIndex.search` contract, exactly."""

    ids: npt.NDArray[np.int64]
    matrix: npt.NDArray[np.float32]
    params: IndexParams = IndexParams()
    kind: str = "flat"
    fetch: None = None
    trained_n: None = None

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        allowed: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, ids) per query row, among `allowed` ids if given; empty slots: id -1.
        Ties keep index order, as FAISS's flat search does."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.matrix.shape[1])
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        ids, mat = self.ids, self.matrix
        if allowed is not None:
            keep = np.isin(ids, np.asarray(allowed, dtype=np.int64))
            ids, mat = ids[keep], mat[keep]
        return _exact_among(q, k, ids, mat)


def load(
    folder: Path, meta: dict[str, str], cur: sqlite3.Cursor, params: IndexParams
) -> MatrixIndex | None:
    """The saved flat index as a matrix if it matches SQLite (generation, count, spot-checked
    rows, as `vectors.load` checks), else None: the caller goes through FAISS."""
    from imgsearch.library import decode, vector_dtype
    from imgsearch.vectors import file_matches, spot_rows

    if meta.get("faiss_kind") != "flat" or not file_matches(meta):
        return None
    found = read_flat(folder / meta["faiss_file"])
    count = int(meta.get("vector_count") or 0)
    if found is None or len(found[0]) != count or str(count) != meta.get("faiss_count"):
        return None
    ids, matrix = found
    for row_id, blob in spot_rows(cur, count):
        at = np.flatnonzero(ids == row_id)
        stored = decode(blob, vector_dtype(meta))
        if len(at) != 1 or not np.allclose(matrix[at[0]], stored, atol=1e-6):
            return None
    return MatrixIndex(ids, matrix, params)
