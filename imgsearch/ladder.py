"""Which FAISS index a library gets, by its size and the `memory_budget` setting.

    exact (IndexFlatIP)         n <= exact_search_max
    IVF-SQ8 + exact re-rank     while its 8-bit codes fit the budget (benchmarks/ANN.md)
    IVF-PQ  + exact re-rank     above: PQ codes of at most 64 bytes, lists memory-mapped
                                (IO_FLAG_MMAP); from 1024 lists a build assigns vectors to
                                lists through an HNSW graph over the centroids

The PQ rung follows autofaiss's `get_optimal_index_keys_v2` / `get_optimal_quantization`
(criteo/autofaiss, external/optimize.py): the largest PQ size whose codes + 8-byte ids fit the
budget, HNSW32 over the centroids once nlist >= 1000. autofaiss itself is not a dependency (it
pins numpy < 2); what differs, and why, is in docs/scaling.md: no OPQ rotation (its training
costs minutes on 2 cores and the exact re-rank from stored vectors recovers the recall), PQ at
most 64 bytes, nlist the power of two nearest 4 sqrt(n), two-level k-means above 1024 lists, and
the HNSW graph only assigns vectors while building: queries score every centroid exactly, since
a graph walk misses the lists of out-of-distribution (text) queries (measured at 1M: recall@10
0.72 with the HNSW quantizer, docs/scaling.md; benchmarks/ANN.md finding 2).
"""

from __future__ import annotations

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
HNSW_FROM = 1024  # lists: assign with an HNSW graph over the centroids above this (autofaiss)
HNSW_M = 32
TWO_LEVEL_ABOVE = 1024  # lists: flat k-means of 4096 on 164k took 15 min on the busy VM
TRAIN_PER_LIST = 40
MIN_TRAIN_PER_CENTROID = 39  # faiss's own floor for k-means (and PQ's 2**nbits centroids)


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: the index kind and its shape."""

    kind: str  # "flat" | "ivf" (IVF-SQ8) | "ivfpq"
    nlist: int = 0
    pq: int = 0  # PQ sub-quantizers = bytes per code at 8 bits
    nbits: int = 8
    hnsw: bool = False  # a build assigns vectors to lists with HNSW (queries: exact)

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
    hnsw = isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW)
    if index.kind == "ivf":
        return Rung("ivf", ivf.nlist, hnsw=hnsw).key
    pq = faiss.downcast_index(ivf).pq
    return Rung("ivfpq", ivf.nlist, pq.M, pq.nbits, hnsw=hnsw).key


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
    return Rung("ivfpq", nlist, pq, nbits, hnsw=nlist >= HNSW_FROM)


def train_count(n: int, rung: Rung) -> int:
    """Vectors the k-means (and the PQ codebooks) train on: 40 per list, at least 256 per PQ
    centroid, never more than the library."""
    return min(n, max(TRAIN_PER_LIST * rung.nlist, 256 * 2**rung.nbits))


def centroids(sample: npt.NDArray[np.float32], nlist: int) -> npt.NDArray[np.float32]:
    """Spherical k-means centroids; two-level (sqrt(nlist) coarse clusters, then each split)
    above TWO_LEVEL_ABOVE lists: ~sqrt(nlist)/2 x cheaper."""
    import faiss

    x = np.ascontiguousarray(sample, dtype=np.float32)
    if nlist <= TWO_LEVEL_ABOVE:
        kmeans = faiss.Kmeans(x.shape[1], nlist, niter=10, spherical=True, seed=1234)
        kmeans.train(x)
        return kmeans.centroids
    from faiss.contrib.clustering import two_level_clustering

    found, _stats = two_level_clustering(
        x, int(math.sqrt(nlist)), nlist, clustering_niter=10, spherical=True, seed=1234
    )
    return np.ascontiguousarray(found, dtype=np.float32)


def trained_ivfpq(
    sample: npt.NDArray[np.float32], n: int, rung: Rung, params: IndexParams
) -> VectorIndex:
    """An empty IVF-PQ index for n vectors: lists from `centroids`, PQ codebooks fitted on the
    sample's residuals."""
    import faiss

    from imgsearch.vectors import VectorIndex

    dim = sample.shape[1]
    cents = centroids(sample, rung.nlist)
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(cents)
    ivf = faiss.IndexIVFPQ(
        quantizer, dim, rung.nlist, rung.pq, rung.nbits, faiss.METRIC_INNER_PRODUCT
    )
    ivf.pq.cp.niter = 10  # codebooks: 10 k-means iterations, not 25 (re-ranking follows)
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))  # the quantizer is trained: PQ only
    return VectorIndex(ivf, "ivfpq", params, trained_n=n)


def add_chunks(index: VectorIndex, rung: Rung, chunks: Iterable[Chunk]) -> None:
    """Add (ids, vectors) chunks to a new IVF-PQ index; with `rung.hnsw` each chunk is assigned
    to its lists through an HNSW graph over the centroids (10M x 16384 exact scores would take
    an hour on 2 cores), then added pre-assigned."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned

    from imgsearch import vectors

    if not rung.hnsw:
        vectors.update(index, np.empty(0, np.int64), chunks)
        return
    ivf = faiss.extract_index_ivf(index.index)
    graph = faiss.IndexHNSWFlat(ivf.d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 40
    graph.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
    graph.hnsw.efSearch = 64  # images are in-distribution: the walk finds their list
    for ids, mat in chunks:
        if len(ids):
            x = np.ascontiguousarray(mat, dtype=np.float32)
            _, lists = graph.search(x, 1)
            add_preassigned(ivf, x, np.ascontiguousarray(lists[:, 0]), np.ascontiguousarray(ids))


def search_params(
    index: VectorIndex, selector: object | None, nprobe: int, lists: object | None = None
) -> object:
    """SearchParametersIVF for one search: `nprobe` lists (more than the setting's when a filter
    leaves few ids), chosen among the `lists` selector's when given (the lists holding an
    allowed id), and with an HNSW quantizer an efSearch wide enough to find them."""
    import faiss

    ivf = faiss.extract_index_ivf(index.index)
    if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        ef = faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, 64), sel=lists)
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe, quantizer_params=ef)
    if lists is not None:
        coarse = faiss.SearchParameters(sel=lists)
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe, quantizer_params=coarse)
    return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
