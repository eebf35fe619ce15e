"""Which FAISS index a library gets, by its size and the `memory_budget` setting.

    exact (IndexFlatIP)         n <= exact_search_max
    IVF-SQ8 + exact re-rank     while its 8-bit codes fit the budget (benchmarks/ANN.md)
    IVF-PQ  + exact re-rank     above: PQ codes of at most 64 bytes, lists memory-mapped
                                (IO_FLAG_MMAP); above TWO_LEVEL_ABOVE lists the k-means is
                                two-level and a build assigns vectors to lists through it

The PQ rung follows autofaiss's `get_optimal_index_keys_v2` / `get_optimal_quantization`
(criteo/autofaiss, external/optimize.py): the largest PQ size whose codes + 8-byte ids fit the
budget. autofaiss itself is not a dependency (it pins numpy < 2); what differs, and why, is in
docs/scaling.md: no OPQ rotation (its training costs minutes on 2 cores and the exact re-rank
from stored vectors recovers the recall), PQ at most 64 bytes, nlist the power of two nearest
4 sqrt(n), and no HNSW graph over the centroids. autofaiss puts one there for queries and
builds; here queries score every centroid exactly, since a graph walk misses the lists of
out-of-distribution (text) queries (at 1M: recall@10 0.72 with the HNSW quantizer), and a build
assigns through the two-level k-means's own tree (`Centroids.assign`): an HNSW walk put only
38% of 10M clustered vectors in their nearest list, which left lists of 160k beside lists of 13
and cost the 10M index its recall (docs/scaling.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgsearch import lazy

if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np
    import numpy.typing as npt

    from imgsearch.vectors import IndexParams, VectorIndex

    Chunk = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py

PQ_SIZES = (64, 48, 32, 16, 8)  # bytes per vector, best first (autofaiss's list from 64 down)
TWO_LEVEL_ABOVE = 1024  # lists: flat k-means of 4096 on 164k took 15 min on the busy VM
ASSIGN_PROBE = 8  # coarse clusters searched per vector by a two-level build
TRAIN_PER_LIST = 40
MIN_TRAIN_PER_CENTROID = 39  # faiss's own floor for k-means (and PQ's 2**nbits centroids)


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: the index kind and its shape."""

    kind: str  # "flat" | "ivf" (IVF-SQ8) | "ivfpq"
    nlist: int = 0
    pq: int = 0  # PQ sub-quantizers = bytes per code at 8 bits
    nbits: int = 8

    @property
    def key(self) -> str:
        """A faiss index-factory description (for logs, benchmarks and docs)."""
        if self.kind == "flat":
            return "IDMap2,Flat"
        coarse = f"IVF{self.nlist}"
        return f"{coarse},SQ8" if self.kind == "ivf" else f"{coarse},PQ{self.pq}x{self.nbits}"


def describe(index: VectorIndex) -> str:
    """The factory description of a built index (the `faiss_key` meta key)."""
    import faiss

    if index.kind == "flat":
        return Rung("flat").key
    ivf = faiss.extract_index_ivf(index.index)
    if index.kind == "ivf":
        return Rung("ivf", ivf.nlist).key
    pq = faiss.downcast_index(ivf).pq
    return Rung("ivfpq", ivf.nlist, pq.M, pq.nbits).key


def sq8_bytes(n: int, dim: int) -> int:
    """RAM of an IVF-SQ8 index: 8-bit codes and ids, plus the centroids."""
    from imgsearch.vectors import nlist_for

    return n * (dim + 8) + nlist_for(n) * dim * 4


def pq_bytes(n: int, dim: int, nlist: int, pq: int) -> int:
    """RAM (or mapped file) of an IVF-PQ index: codes and ids, and the centroids."""
    return n * (pq + 8) + nlist * dim * 4


def pq_nlist(n: int) -> int:
    """The power of two nearest 4 sqrt(n) (autofaiss's rule below 1M; 10M -> 16384), at most
    n / 39 so k-means has points enough."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))
    while nlist > 1 and nlist * MIN_TRAIN_PER_CENTROID > n:
        nlist //= 2
    return max(nlist, 1)


def choose(n: int, dim: int, params: IndexParams) -> Rung:
    """The rung for a library of n vectors of `dim` under `params.memory_budget` bytes."""
    from imgsearch.vectors import nlist_for

    if n <= params.exact_max:
        return Rung("flat")
    if sq8_bytes(n, dim) <= params.memory_budget:
        return Rung("ivf", nlist_for(n))
    nlist = pq_nlist(n)
    sizes = [m for m in PQ_SIZES if dim % m == 0] or [1]
    fits = [m for m in sizes if pq_bytes(n, dim, nlist, m) <= params.memory_budget]
    pq = fits[0] if fits else sizes[-1]  # the budget is a wish: the smallest codes then
    nbits = max(1, min(8, int(math.log2(max(n // MIN_TRAIN_PER_CENTROID, 2)))))
    return Rung("ivfpq", nlist, pq, nbits)


def train_count(n: int, rung: Rung) -> int:
    """Vectors the k-means (and the PQ codebooks) train on: 40 per list, at least 256 per PQ
    centroid, never more than the library."""
    return min(n, max(TRAIN_PER_LIST * rung.nlist, 256 * 2**rung.nbits))


@dataclass(frozen=True)
class Centroids:
    """k-means centroids, and for a two-level k-means the coarse clusters they were split from:
    `heads[group[j]]` is the coarse centroid whose points centroid j was trained on."""

    fine: npt.NDArray[np.float32]
    heads: npt.NDArray[np.float32] | None = None
    group: npt.NDArray[np.int64] | None = None

    def assign(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Each row's nearest fine centroid, searched among those of its ASSIGN_PROBE nearest
        coarse clusters, one matrix product per cluster. At 10M x 16384 lists: 1/12 of the
        exact scores, 18.5k vectors/s on 2 cores against 5.8k for exact and 3.7k for a faiss
        IndexIVFFlat over the centroids (which scans without BLAS), 99.7% the exact list and
        the rest in one scoring within 2e-4 of it; benchmarks/scale.py reports the built
        index's share (`assign_nearest_fraction`). Two-level centroids only."""
        assert self.heads is not None
        probe = min(ASSIGN_PROBE, len(self.heads))
        near = np.argpartition(-(x @ self.heads.T), probe - 1, axis=1)[:, :probe].ravel()
        rows = np.repeat(np.arange(len(x)), probe)
        order = np.argsort(near, kind="stable")
        near, rows = near[order], rows[order]
        bounds = np.searchsorted(near, np.arange(len(self.heads) + 1))
        best = np.full(len(x), -np.inf, np.float32)
        found = np.zeros(len(x), np.int64)
        for c, (members, block) in enumerate(self._blocks):
            mine = rows[bounds[c] : bounds[c + 1]]
            if not len(mine) or not len(members):
                continue
            scores = x[mine] @ block.T
            top = np.argmax(scores, axis=1)
            value = scores[np.arange(len(mine)), top]
            better = value > best[mine]
            best[mine[better]] = value[better]
            found[mine[better]] = members[top[better]]
        return found

    @functools.cached_property
    def _blocks(self) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """(fine centroid numbers, their vectors) of each coarse cluster."""
        assert self.group is not None and self.heads is not None
        order = np.argsort(self.group, kind="stable")
        edges = np.searchsorted(self.group[order], np.arange(len(self.heads) + 1))
        parts = [order[edges[c] : edges[c + 1]] for c in range(len(self.heads))]
        return [(m, np.ascontiguousarray(self.fine[m])) for m in parts]


def centroids(sample: npt.NDArray[np.float32], nlist: int) -> Centroids:
    """Spherical k-means centroids; two-level above TWO_LEVEL_ABOVE lists (sqrt(nlist) coarse
    clusters, each split into lists in proportion to its points, as faiss's
    `two_level_clustering`): ~sqrt(nlist)/2 x cheaper, and the coarse clusters kept so that a
    build can assign millions of vectors through them."""
    import faiss

    x = np.ascontiguousarray(sample, dtype=np.float32)
    if nlist <= TWO_LEVEL_ABOVE:
        kmeans = faiss.Kmeans(x.shape[1], nlist, niter=10, spherical=True, seed=1234)
        kmeans.train(x)
        return Centroids(kmeans.centroids)
    dim = x.shape[1]
    outer = int(math.sqrt(nlist))
    coarse = faiss.Kmeans(
        dim, outer, niter=10, spherical=True, seed=1234, max_points_per_centroid=2000
    )
    coarse.train(x)
    _, label = coarse.index.search(x, 1)
    label = label[:, 0]
    split = _split_counts(np.bincount(label, minlength=outer), nlist)
    fine, group = [], []
    for c in np.flatnonzero(split):
        points = x[label == c]
        k = int(split[c])
        if k == 1:
            found = points.mean(axis=0, keepdims=True)
            found /= np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
        else:
            inner = faiss.Kmeans(
                dim, k, niter=10, spherical=True, seed=1234, min_points_per_centroid=1
            )
            inner.train(points)
            found = inner.centroids
        fine.append(np.asarray(found, dtype=np.float32))
        group.append(np.full(k, c, dtype=np.int64))
    return Centroids(
        np.ascontiguousarray(np.concatenate(fine)),
        np.ascontiguousarray(coarse.centroids, dtype=np.float32),
        np.concatenate(group),
    )


def _split_counts(points: npt.NDArray[np.int64], nlist: int) -> npt.NDArray[np.int64]:
    """Lists per coarse cluster: in proportion to its points (faiss's rebalancing), never more
    than it has points, summing to nlist."""
    total = int(points.sum())
    edges = np.cumsum(points) * nlist // max(total, 1)
    split = np.minimum(np.diff(edges, prepend=0), points)
    while split.sum() < nlist:  # the lists clipped above go where points per list are most
        room = np.where(split < points, points / np.maximum(split, 1), -1.0)
        split[int(np.argmax(room))] += 1
    return split.astype(np.int64)


def trained_ivfpq(
    sample: npt.NDArray[np.float32], n: int, rung: Rung, params: IndexParams
) -> tuple[VectorIndex, Centroids]:
    """An empty IVF-PQ index for n vectors, lists from `centroids`, PQ codebooks fitted on the
    sample's residuals; and the centroids, which `add_chunks` assigns through."""
    import faiss

    from imgsearch.vectors import VectorIndex

    dim = sample.shape[1]
    cents = centroids(sample, rung.nlist)
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(cents.fine)
    ivf = faiss.IndexIVFPQ(
        quantizer, dim, rung.nlist, rung.pq, rung.nbits, faiss.METRIC_INNER_PRODUCT
    )
    ivf.pq.cp.niter = 10  # codebooks: 10 k-means iterations, not 25 (re-ranking follows)
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))  # the quantizer is trained: PQ only
    return VectorIndex(ivf, "ivfpq", params, trained_n=n), cents


def add_chunks(index: VectorIndex, cents: Centroids, chunks: Iterable[Chunk]) -> None:
    """Add (ids, vectors) chunks to a new IVF-PQ index: each chunk assigned to its lists through
    a two-level k-means (`Centroids.assign`; 10M x 16384 exact scores take ~30 min on 2
    cores), then added pre-assigned; after a one-level one, by the index's flat quantizer."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned

    from imgsearch import vectors

    if cents.heads is None:
        vectors.update(index, np.empty(0, np.int64), chunks)
        return
    ivf = faiss.extract_index_ivf(index.index)
    for ids, mat in chunks:
        if len(ids):
            x = np.ascontiguousarray(mat, dtype=np.float32)
            lists = cents.assign(x)
            add_preassigned(ivf, x, np.ascontiguousarray(lists), np.ascontiguousarray(ids))


def search_params(
    index: VectorIndex, selector: object | None, nprobe: int, lists: object | None = None
) -> object:
    """SearchParametersIVF for one search: `nprobe` lists (more than the setting's when a filter
    leaves few ids), chosen among the `lists` selector's when given (the lists holding an
    allowed id)."""
    import faiss

    if lists is not None:
        coarse = faiss.SearchParameters(sel=lists)
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe, quantizer_params=coarse)
    return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
