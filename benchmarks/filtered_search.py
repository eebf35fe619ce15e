"""Filtered search at scale (issue 10 §2): latency and recall@10 of `Searcher.search(Query)` with
a filter, at selectivities from 0.01% to 100%, against exact search over the filtered set.

The library is real: N synthetic CLIP-like vectors (benchmarks/synth.py) stored through
`Library.store`, the FAISS file saved by `Library.ann.save` as `imgsearch index` leaves it
(IVF-SQ8 above exact_search_max). Each row gets a capture date so that `before:DATE` allows an
exact fraction of the library: 0.01% of the rows on 2000-01-01, up to 0.1% by 2000-01-02, 1%,
10%, 50% and 100% on the following days, rows shuffled (dates are independent of the vectors).
A query is `q<i> before:<day>`: `Searcher.search` runs its real path (filter SQL -> allowed
ids -> plan by selectivity -> ANN or exact over the subset -> rows -> hits); only the text
embedding is replaced by held-out text-like vectors (embedding is measured by querybench).

    python benchmarks/filtered_search.py --n 1000000 \
        --out benchmarks/results/filtered-1m-DATE-vm.json

Keys: filtered_search_p50_ms_<size>_<sel>, filtered_search_p95_ms_<size>_<sel>,
filtered_recall10_<size>_<sel>, filtered_strategy_<size>_<sel>; <size> 1m or 100k,
<sel> 0.01pct ... 100pct. The p50/p95 keys are the steady state: the 100 queries share one
filter, whose allowed set `Searcher` caches (as for the pages of a query or the web UI's
scroll). filtered_search_cold_p50_ms_<size>_<sel> times a filter's first query (the cache
emptied before each of --cold-queries queries); unfiltered_search_p50_ms_<size> the same queries
without a filter, the yardstick on a busy machine. load_average_before/load_average: the
machine's load around the run.

What was tried, and kept or not, is in benchmarks/ANN.md ("Filtered search at 1M, planned by
selectivity"): post-filtering broad filters (kept from 30%, nprobe / selectivity lists; with
nprobe / sqrt(selectivity) 100k at 50% fell to recall 0.980), probing only the lists that hold
allowed ids with nprobe x selectivity^-0.6 of them (kept), the allowed set cached per committed
state (kept), ids read as one group_concat (kept), a bitmap for membership once ids are listed
(kept: np.isin against 100k ids cost more than the search).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synth import Mixture, cached_sample, text_like  # noqa: E402
from benchmarks.vectorbench import percentiles_ms  # noqa: E402

# (label, fraction of the library allowed, the day before which exactly that fraction falls)
SELECTIVITIES = (
    ("0.01pct", 0.0001, "2000-01-02"),
    ("0.1pct", 0.001, "2000-01-03"),
    ("1pct", 0.01, "2000-01-04"),
    ("10pct", 0.1, "2000-01-05"),
    ("50pct", 0.5, "2000-01-06"),
    ("100pct", 1.0, "2000-01-07"),
)
STORE_BATCH = 5000
K = 10


def day_of_rows(n: int) -> npt.NDArray[np.int64]:
    """Day number (0 = 2000-01-01) of each row: the cumulative fractions hit SELECTIVITIES."""
    counts = np.diff([0] + [round(f * n) for _, f, _ in SELECTIVITIES])
    days = np.repeat(np.arange(len(counts)), counts)
    return days[np.random.default_rng(7).permutation(n)]


def build_library(
    path: Path, n: int, mix: Mixture, cache: Path, trained: Path | None = None
) -> Path:
    """The library (cached by its content key): rows, dates and the saved FAISS file.

    `trained`: an empty IVF trained as `vectors.trained_ivf` trains this library's (the same
    vectors, so the same k-means sample and seed; e.g. the duplicates benchmark's cache). The
    vectors are added to it and it is saved as `Library.ann.save` saves its own build, which
    then finds the file current: the same file, without k-means (6 min at 100k on this VM)."""
    from imgsearch.library import ImageRecord, Library
    from imgsearch.modelspec import ModelSpec, PreprocessSpec
    from imgsearch.vectors import IndexParams

    if (path / "done").is_file():
        return path
    if path.exists():
        shutil.rmtree(path)
    vectors = cached_sample(mix, n, seed=0, cache=cache)
    days = day_of_rows(n)
    spec = ModelSpec("synthetic", "", mix.dim, PreprocessSpec((224, 224), (0.5,) * 3, (0.5,) * 3))
    started = time.perf_counter()
    lib = Library.open(path, create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(spec)
        for start in range(0, n, STORE_BATCH):
            lib.store(
                [
                    ImageRecord(
                        path=f"/synthetic/{i // 1000:04d}/{i:07d}.jpg",
                        size=100_000 + i,
                        mtime_ns=1_700_000_000_000_000_000 + i,
                        fingerprint=f"{i:032x}",
                        width=640,
                        height=480,
                        taken_at=f"2000-01-{1 + int(days[i]):02d}T12:00:00",
                        vector=np.asarray(vectors[i], dtype=np.float32),
                    )
                    for i in range(start, min(n, start + STORE_BATCH))
                ],
                [],
            )
        stored = time.perf_counter()
        if trained is not None:
            seed_index(lib, trained, vectors)
        lib.ann.save(IndexParams())
    print(f"library of {n}: stored in {stored - started:.0f} s, FAISS index "
          f"{time.perf_counter() - stored:.0f} s", flush=True)  # fmt: skip
    (path / "done").write_text("ok\n")
    return path


def seed_index(lib: Any, trained: Path, vectors: npt.NDArray[np.float32]) -> None:
    """Fill the trained IVF with the stored vectors (ids 1..n) and record it as DerivedIndex.save
    does (imgsearch/annindex.py)."""
    import faiss

    from imgsearch import vectors as vecs

    n = len(vectors)
    index = vecs.VectorIndex(faiss.read_index(str(trained)), "ivf", vecs.IndexParams(), trained_n=n)
    assert index.index.ntotal == 0 and index.index.nlist == vecs.nlist_for(n)
    vecs.update(index, np.empty(0, np.int64), [(np.arange(1, n + 1, dtype=np.int64), vectors)])
    gen = lib.generation()
    name = vecs.save(lib.path, index, gen)
    with lib.writing() as conn:
        lib.set_meta_in(conn, faiss_file=name, faiss_generation=gen, faiss_count=index.ntotal,
                        faiss_kind="ivf", faiss_trained=n)  # fmt: skip


def exact_truth(
    base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """(nq, K) row ids (1-based, as stored) of the exact top-K among the allowed rows."""
    rows = np.flatnonzero(allowed)
    scores = queries @ base[rows].T  # (nq, |allowed|)
    top = np.argpartition(-scores, min(K, len(rows) - 1), axis=1)[:, :K]
    order = np.take_along_axis(-scores, top, 1).argsort(axis=1, kind="stable")
    return rows[np.take_along_axis(top, order, 1)] + 1


def measure(
    path: Path, n: int, mix: Mixture, cache: Path, count: int, cold_queries: int = 20
) -> dict[str, Any]:
    from imgsearch import config
    from imgsearch.query import Filter, Query, Term
    from imgsearch.search import Searcher

    base = cached_sample(mix, n, seed=0, cache=cache)
    queries = text_like(mix, count, seed=1_000_003)
    days = day_of_rows(n)

    class Bench(Searcher):
        def embed_terms(self, terms: Any, mode: str | None = None) -> npt.NDArray[np.float32]:
            return queries[int(terms[0].value[1:])]

    size = "1m" if n == 1_000_000 else f"{n // 1000}k"
    out: dict[str, Any] = {"n": n, "queries": count, "machine": "vm", "cpu_count": os.cpu_count()}
    with Bench(path, settings=config.resolve()) as searcher:
        plain = []  # the same queries unfiltered: what a filter adds is measured against it
        for i in range(3):  # warm-up, as for each selectivity below
            searcher.search(Query(terms=(Term("text", f"q{i}"),), k=K, min_score=-1.0))
        for i in range(count):
            t0 = time.perf_counter()
            searcher.search(Query(terms=(Term("text", f"q{i}"),), k=K, min_score=-1.0))
            plain.append(time.perf_counter() - t0)
        unfiltered = out[f"unfiltered_search_p50_ms_{size}"] = round(percentiles_ms(plain)[0], 2)
        print(f"{size} unfiltered: p50 {unfiltered:.1f} ms", flush=True)
        for j, (label, _fraction, day) in enumerate(SELECTIVITIES):
            allowed = days <= j
            truth = exact_truth(base, queries, allowed)
            flt = (Filter("before", (day,)),)

            def one(i: int, flt: tuple = flt) -> Any:
                return searcher.search(
                    Query(terms=(Term("text", f"q{i}"),), filters=flt, k=K, min_score=-1.0)
                )

            for i in range(3):  # warm-up: first touches of the index's and the table's pages
                one(i)
            cold = []  # the filter's first query: its allowed set is not cached yet
            for i in range(min(count, cold_queries)):
                searcher._filters.clear()
                t0 = time.perf_counter()
                one(i)
                cold.append(time.perf_counter() - t0)
            times, found, strategies = [], [], Counter()
            for i in range(count):
                t0 = time.perf_counter()
                result = one(i)
                times.append(time.perf_counter() - t0)
                found.append([h.id for h in result.hits])
                strategies[result.strategy] += 1
            assert all(len(f) == min(K, int(allowed.sum())) for f in found), "short result"
            recall = float(np.mean([len(set(f) & set(t.tolist())) / len(t)
                                    for f, t in zip(found, truth)]))  # fmt: skip
            p50, p95 = percentiles_ms(times)
            strategy = strategies.most_common(1)[0][0]
            cold_p50 = percentiles_ms(cold)[0] if cold else float("nan")
            print(f"{size} {label:>8}: {int(allowed.sum()):>7} allowed  p50 {p50:7.1f} ms  "
                  f"p95 {p95:7.1f} ms  recall@10 {recall:.3f}  ({strategy})  "
                  f"cold p50 {cold_p50:7.1f} ms", flush=True)  # fmt: skip
            out[f"filtered_search_p50_ms_{size}_{label}"] = round(p50, 2)
            out[f"filtered_search_p95_ms_{size}_{label}"] = round(p95, 2)
            out[f"filtered_recall10_{size}_{label}"] = round(recall, 4)
            out[f"filtered_strategy_{size}_{label}"] = strategy
            if cold:
                out[f"filtered_search_cold_p50_ms_{size}_{label}"] = round(
                    percentiles_ms(cold)[0], 2
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "imgsearch-bench")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--cold-queries", type=int, default=20,
        help="queries timed with the filter cache emptied first (the filter's first query)",
    )  # fmt: skip
    parser.add_argument("--trained", type=Path, help="an empty trained IVF (see build_library)")
    args = parser.parse_args()
    mix = Mixture()
    load_before = os.getloadavg()
    from imgsearch.library import SCHEMA_HEAD

    key = hashlib.blake2b(repr((args.n, mix, SELECTIVITIES, SCHEMA_HEAD)).encode(),
                          digest_size=6).hexdigest()  # fmt: skip
    path = build_library(
        args.cache / f"filtered-{args.n}-{key}", args.n, mix, args.cache, args.trained
    )
    out = measure(path, args.n, mix, args.cache, args.queries, args.cold_queries)
    out["date"] = time.strftime("%Y%m%d-%H%M")
    out["load_average"] = os.getloadavg()
    out["load_average_before"] = load_before
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
