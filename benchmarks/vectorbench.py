"""The search step alone: latency of single queries and recall@k against exact search."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from benchmarks.synth import Mixture, chunks

if TYPE_CHECKING:
    from imgsearch.config import Settings


@dataclass(frozen=True)
class SearchFigures:
    """One index's figures: build seconds, single-query latency (ms) and recall@k vs exact."""

    kind: str
    n: int
    build_s: float
    p50_ms: float
    p95_ms: float
    recall: float | None


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """(p50, p95) of a list of durations in seconds, in milliseconds."""
    arr = np.asarray(seconds) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def time_each(fn: Callable[[int], Any], count: int, *, warmup: int = 3) -> list[float]:
    """Durations of fn(i) for i in range(count), after `warmup` untimed calls."""
    for i in range(min(warmup, count)):
        fn(i)
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def exact_neighbours(
    base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int, *, first_id: int = 1
) -> npt.NDArray[np.int64]:
    """(nq, k) ids of the true top-k by inner product (batched IndexFlatIP), ids from first_id."""
    import faiss

    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(np.ascontiguousarray(base))
    _, ids = flat.search(np.ascontiguousarray(queries), k)
    return ids + first_id


def recall_at_k(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean fraction of the true top-k ids found in each row's top-k."""
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / float(truth.size)


def single_query_latency(
    search: Callable[[npt.NDArray[np.float32]], tuple[Any, npt.NDArray[np.int64]]],
    queries: npt.NDArray[np.float32],
) -> tuple[float, float, npt.NDArray[np.int64]]:
    """(p50_ms, p95_ms, ids) searching one query at a time, as an interactive query does."""
    found: list[npt.NDArray[np.int64]] = []

    def one(i: int) -> None:
        _, ids = search(queries[i : i + 1])
        found.append(ids[0])

    times = time_each(one, len(queries), warmup=0)
    p50, p95 = percentiles_ms(times)
    return p50, p95, np.stack(found)


def library_index(base: npt.NDArray[np.float32], settings: Settings) -> tuple[Any, float]:
    """(VectorIndex, build seconds) from imgsearch.vectors.build: the library's own choice of
    exact (IndexFlatIP) or approximate (IVF) for this many vectors, with its settings.

    An IVF index re-ranks with exact vectors; a library reads them from SQLite by id
    (`Library.vectors_for_ids`, timed separately by the query benchmark), here they come from
    `base` (ids start at 1)."""
    from imgsearch import vectors

    t0 = time.perf_counter()
    vindex = vectors.build(
        chunks(base),
        dim=base.shape[1],
        params=vectors.IndexParams.from_settings(settings),
        total=len(base),
    )
    vindex.fetch = lambda ids: (ids, base[ids - 1])
    return vindex, time.perf_counter() - t0


def library_search(
    vindex: Any,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64] | None = None,
    *,
    k: int = 10,
    build_s: float = 0.0,
) -> SearchFigures:
    """Single-query VectorIndex.search latency (and recall@k if `truth` ids are given)."""
    for q in queries[:3]:  # warm-up: first touches of the index's pages
        vindex.search(q[None], k)
    p50, p95, found = single_query_latency(lambda q: vindex.search(q, k), queries)
    recall = recall_at_k(found, truth) if truth is not None else None
    return SearchFigures(vindex.kind, vindex.ntotal, build_s, p50, p95, recall)


def held_out(mix: Mixture, count: int) -> dict[str, npt.NDArray[np.float32]]:
    """Query sets never in the library: 'text' (CLIP-text-like, off the image cone; the main
    case) and 'image' (new samples of the same mixture, as `imgsearch similar` on a new file)."""
    from benchmarks.synth import sample, text_like

    return {
        "text": text_like(mix, count, seed=1_000_003),
        "image": sample(mix, count, seed=1_000_004),
    }
