"""Nearest neighbours under a filter, planned by how much of the library it allows (issue 10
§2; the measurements behind each number: benchmarks/ANN.md, "Filtered search at 1M").

    exact              a flat index: exact search with a bitmap over the allowed row ids
    exact-subset       at most EXACT_SUBSET allowed: their stored vectors scored exactly
    <kind>-filtered    a selective filter: the IVF probes only lists that hold an allowed id,
                       the best nprobe x selectivity^-0.6 of them, a bitmap over row ids
                       skipping the others' codes (the allowed ids are listed once, cached)
    <kind>-postfiltered  a broad one (>= POSTFILTER_FROM of the library): the IVF searched
                       unfiltered (nprobe / sqrt(selectivity) lists) for ~1/selectivity times
                       the candidates, and the filter's SQL asked about those rows only
                       (never a list of the allowed ids)

The candidates are then re-scored exactly, as without a filter. A search that comes back short
(faiss #3112) widens: the post-filter asks for more candidates, then hands over to the filtered
plan, which then probes every list holding an allowed id; exact search over the allowed set
ends it, so k hits come back whenever k images match.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsearch.vectors import EXACT_SUBSET, filtered_nprobe, single_query_threads

if TYPE_CHECKING:
    import sqlite3

    import numpy.typing as npt

    from imgsearch.filterset import Allowed
    from imgsearch.vectors import VectorIndex

Ranked = list[tuple[int, float]]
POSTFILTER_FROM = 0.3  # selectivity from which candidates are tested instead of ids listed
POSTFILTER_POWER = 1.0  # lists probed: nprobe / selectivity**POSTFILTER_POWER
OVERSAMPLE = 1.5  # candidates asked for beyond 1/selectivity x those re-ranked
WIDENINGS = 3  # post-filter tries (candidates and lists doubled each time)


def search(
    index: VectorIndex,
    vector: npt.NDArray[np.float32],
    want: int,
    allowed: Allowed | None,
    cur: sqlite3.Cursor,
) -> tuple[Ranked, str]:
    """The best `want` (id, score) among the allowed ids (all when None) and the plan used."""
    q = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
    if allowed is None:
        return _pairs(*index.search(q, want)), "exact" if index.kind == "flat" else index.kind
    count = allowed.count(cur)
    want = max(1, min(want, count))
    if index.kind == "flat":
        return _pairs(*index.search(q, want, allowed.ids(cur))), "exact"
    if count <= min(index.params.exact_max, EXACT_SUBSET) or index.fetch is None:
        return _pairs(*index.search(q, want, allowed.ids(cur))), "exact-subset"
    single_query_threads()
    selectivity = count / max(index.ntotal, 1)
    if selectivity >= POSTFILTER_FROM:
        found = _postfiltered(index, q, want, allowed, cur, selectivity)
        if found is not None:
            return found, f"{index.kind}-postfiltered"
    found = _filtered(index, q, want, allowed, cur)
    if len(found) >= want:
        return found, f"{index.kind}-filtered"
    return _pairs(*_exact(index, q, want, allowed.ids(cur))), "exact-subset"


def _reranked(index: VectorIndex) -> int:
    times = index.params.pq_rerank if index.kind == "ivfpq" else index.params.rerank
    return max(1, times)


def _postfiltered(
    index: VectorIndex,
    q: npt.NDArray[np.float32],
    want: int,
    allowed: Allowed,
    cur: sqlite3.Cursor,
    selectivity: float,
) -> Ranked | None:
    """Unfiltered IVF candidates, best first, tested against the filter until as many pass as
    are re-ranked; None when even the widest try finds fewer than `want`."""
    import faiss

    from imgsearch.ladder import search_params

    wanted = want * _reranked(index)
    nlist = faiss.extract_index_ivf(index.index).nlist
    nprobe = min(nlist, math.ceil(index.params.nprobe / selectivity**POSTFILTER_POWER))
    asked = math.ceil(wanted / selectivity * OVERSAMPLE) + 16
    best = np.empty(0, np.int64)
    for _ in range(WIDENINGS):
        params = search_params(index, None, nprobe)
        _, found = index.index.search(q, min(asked, index.ntotal), params=params)
        candidates = found[0][found[0] >= 0]
        best = _first_members(allowed, cur, candidates, wanted)
        if len(best) >= wanted or len(candidates) >= index.ntotal:
            break
        asked, nprobe = asked * 2, min(nlist, nprobe * 2)
    if len(best) < want:
        return None
    return _pairs(*index._rerank(q, want, best[None, :]))


def _first_members(
    allowed: Allowed, cur: sqlite3.Cursor, candidates: npt.NDArray[np.int64], wanted: int
) -> npt.NDArray[np.int64]:
    """The first `wanted` allowed candidates (in order), testing a chunk at a time."""
    from imgsearch.filterset import CHUNK

    kept: list[npt.NDArray[np.int64]] = []
    total = 0
    for start in range(0, len(candidates), CHUNK):
        part = candidates[start : start + CHUNK]
        passed = part[allowed.members(cur, part)]
        kept.append(passed)
        total += len(passed)
        if total >= wanted:
            break
    return np.concatenate(kept)[:wanted] if kept else np.empty(0, np.int64)


def _filtered(
    index: VectorIndex,
    q: npt.NDArray[np.float32],
    want: int,
    allowed: Allowed,
    cur: sqlite3.Cursor,
) -> Ranked:
    """IVF over the lists that hold allowed ids, a bitmap over row ids; every such list when
    the best ones hold too few."""
    import faiss

    from imgsearch.ladder import search_params

    count = allowed.count(cur)
    wanted = want * _reranked(index)
    bits = allowed.bitmap(cur)
    selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
    lists, occupied, _keep = _list_selector(index, allowed, cur)
    nprobe = filtered_nprobe(index, count, wanted)
    widest = occupied if lists is not None else faiss.extract_index_ivf(index.index).nlist
    nprobe = min(nprobe, widest)
    while True:
        params = search_params(index, selector, nprobe, lists)
        _, found = index.index.search(q, min(wanted, count), params=params)
        got = int((found[0] >= 0).sum())
        if got >= min(wanted, count) or nprobe >= widest:
            break
        nprobe = widest
    return _pairs(*index._rerank(q, want, found))


def _list_selector(
    index: VectorIndex, allowed: Allowed, cur: sqlite3.Cursor
) -> tuple[Any, int, Any]:
    """(a faiss selector over the IVF lists holding an allowed id, how many, its bitmap) or
    (None, 0, None) when the index has no id -> list map (sparse ids)."""
    import faiss

    from imgsearch.vectors import list_of

    where = list_of(index)
    if where is None:
        return None, 0, None
    kept = allowed.lists.get(id(index))
    if kept is None or kept[0] is not index:
        ids = allowed.ids(cur)
        numbers = where[ids[ids < len(where)]]
        nlist = faiss.extract_index_ivf(index.index).nlist
        mask = np.zeros(nlist, dtype=bool)
        mask[numbers[numbers >= 0]] = True
        kept = (index, np.packbits(mask, bitorder="little"), int(mask.sum()))
        allowed.lists.clear()
        allowed.lists[id(index)] = kept
    _, bits, occupied = kept
    return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), occupied, bits


def _exact(
    index: VectorIndex, q: npt.NDArray[np.float32], k: int, ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    from imgsearch.vectors import _exact_among

    assert index.fetch is not None
    return _exact_among(q, k, *index.fetch(ids))


def _pairs(scores: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> Ranked:
    return [(int(i), float(v)) for i, v in zip(ids[0], scores[0]) if i >= 0]
