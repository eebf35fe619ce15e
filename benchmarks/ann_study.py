"""ANN study: exact vs HNSW vs IVF (and 8-bit variants) on clustered 512-d vectors.

For each size: build time, memory, single-query p50/p95 latency and recall@10 against exact
search, sweeping the search-time knob (efSearch, nprobe). Rows are appended to the JSON file as
they are measured, so a long run that is stopped keeps what it finished.

    python benchmarks/ann_study.py --flat-sizes 50000,100000,200000,500000,1000000 \\
        --sizes 100000,1000000 --configs 'hnsw:M=32;ivf:nlist=4096'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synth import Mixture, cached_sample, text_like  # noqa: E402
from benchmarks.vectorbench import (  # noqa: E402
    exact_neighbours,
    held_out,
    recall_at_k,
    single_query_latency,
)

DEFAULT_CACHE = Path.home() / ".cache" / "imgsearch-bench"
EF_SWEEP = (16, 32, 64, 128, 256)
NPROBE_SWEEP = (4, 8, 16, 32, 64, 128)


@dataclass
class Row:
    """One (index, size, search knob, threads) measurement; recall per query set."""

    n: int
    index: str
    params: dict[str, Any]
    build_s: float
    mem_mb: float  # saved index file size (older results: RSS growth during the build)
    threads: int
    p50_ms: float  # text-like queries
    p95_ms: float
    recall10: float  # text-like queries (the main case)
    recall10_image: float  # image-like queries (similar)
    p50_ms_image: float
    extra: dict[str, float] = field(default_factory=dict)  # other query sets (--extra-gaps)


def parse_config(text: str) -> tuple[str, dict[str, int]]:
    """'hnsw:M=32,efc=64' -> ('hnsw', {'M': 32, 'efc': 64})."""
    name, _, rest = text.partition(":")
    params = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        params[key] = int(value)
    return name, params


def file_mb(index: Any) -> float:
    """Size of the index as faiss.write_index saves it: what a query process loads."""
    import faiss

    with tempfile.NamedTemporaryFile(suffix=".faiss") as tmp:
        faiss.write_index(index, tmp.name)
        return os.path.getsize(tmp.name) / 2**20


def build_index(
    name: str, params: dict[str, int], base: npt.NDArray[np.float32], cache: dict[str, Any]
) -> tuple[Any, dict[str, int]]:
    """A trained, filled FAISS index for one config; returns it with the parameters used."""
    import faiss

    d = base.shape[1]
    ip = faiss.METRIC_INNER_PRODUCT
    rng = np.random.default_rng(7)
    if name == "flat":
        index = faiss.IndexFlatIP(d)
    elif name == "flatfp16":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
    elif name in ("hnsw", "hnswsq8"):
        m = params.get("M", 32)
        efc = params.get("efc", max(40, 2 * m))  # the library's rule (imgsearch.vectors.build)
        params = {"M": m, "efc": efc}
        if name == "hnsw":
            index = faiss.IndexHNSWFlat(d, m, ip)
        else:
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, m, ip)
            index.train(base[rng.choice(len(base), min(len(base), 100_000), replace=False)])
        index.hnsw.efConstruction = efc
    elif name in ("ivf", "ivfsq8"):
        nlist = params.get("nlist", 4096)
        train_n = min(len(base), params.get("train", 40 * nlist))
        params = {"nlist": nlist, "train": train_n}
        key = f"quantizer-{nlist}-{train_n}-{len(base)}"
        quantizer = cache.get(key)
        if quantizer is not None:  # build_s then leaves out the k-means training
            params["reused_kmeans"] = 1
        else:  # k-means once per nlist; ivf and ivfsq8 share it
            sample = base[rng.choice(len(base), train_n, replace=False)]
            kmeans = faiss.Kmeans(d, nlist, niter=10, spherical=True, seed=1234)
            kmeans.train(sample)
            quantizer = faiss.IndexFlatIP(d)
            quantizer.add(kmeans.centroids)
            cache[key] = quantizer
        if name == "ivf":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        else:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, ip
            )
            index.train(base[rng.choice(len(base), min(len(base), 100_000), replace=False)])
        index.is_trained = True
    else:
        raise SystemExit(f"unknown index config {name!r}")
    for start in range(0, len(base), 100_000):
        index.add(np.ascontiguousarray(base[start : start + 100_000]))
    return index, params


def searcher(
    index: Any, base: npt.NDArray[np.float32], rerank: int, k: int = 10
) -> Callable[[npt.NDArray[np.float32]], tuple[Any, npt.NDArray[np.int64]]]:
    """index.search for top-k; with `rerank` R, top R*k re-scored exactly with the stored vectors
    (a library can read those R*k vectors from SQLite), so 8-bit codes only pick candidates."""
    if not rerank:
        return lambda q: index.search(q, k)

    def search(q: npt.NDArray[np.float32]) -> tuple[Any, npt.NDArray[np.int64]]:
        _, ids = index.search(q, rerank * k)
        cand = ids[0][ids[0] >= 0]
        scores = base[cand] @ q[0]
        best = np.argsort(-scores)[:k]
        return scores[best][None], cand[best][None]

    return search


def sweep(name: str, index: Any, args: argparse.Namespace) -> list[tuple[str, int | None]]:
    """(knob name, value) pairs to measure: efSearch for HNSW, nprobe for IVF, none for flat."""
    if name.startswith("hnsw"):
        return [("efSearch", ef) for ef in args.ef]
    if name.startswith("ivf"):
        return [("nprobe", p) for p in args.nprobe if p <= index.nlist]
    return [("", None)]


def set_knob(index: Any, knob: str, value: int | None) -> None:
    if knob == "efSearch":
        index.hnsw.efSearch = value
    elif knob == "nprobe":
        index.nprobe = value


def measure(
    name: str,
    params: dict[str, int],
    base: npt.NDArray[np.float32],
    queries: dict[str, npt.NDArray[np.float32]],
    truth: dict[str, npt.NDArray[np.int64]],
    args: argparse.Namespace,
    cache: dict[str, Any],
) -> list[Row]:
    """Build one config at one size and measure every value of its search knob."""
    import faiss

    faiss.omp_set_num_threads(args.threads[-1])
    rerank = params.pop("rerank", 0)
    t0 = time.perf_counter()
    index, used = build_index(name, params, base, cache)
    if rerank:
        used["rerank"] = rerank
    build_s = time.perf_counter() - t0
    mem = file_mb(index)
    rows = []
    for knob, value in sweep(name, index, args):
        set_knob(index, knob, value)
        for threads in args.threads:
            faiss.omp_set_num_threads(threads)
            figures: dict[str, tuple[float, float, float]] = {}
            for kind, qs in queries.items():
                for q in qs[:5]:
                    index.search(q[None], 10)
                p50, p95, found = single_query_latency(searcher(index, base, rerank), qs)
                figures[kind] = (p50, p95, recall_at_k(found, truth[kind]))
            rows.append(
                Row(
                    n=len(base),
                    index=name,
                    params={**used, **({knob: value} if knob else {})},
                    build_s=round(build_s, 2),
                    mem_mb=round(mem, 1),
                    threads=threads,
                    p50_ms=round(figures["text"][0], 3),
                    p95_ms=round(figures["text"][1], 3),
                    recall10=round(figures["text"][2], 4),
                    recall10_image=round(figures["image"][2], 4),
                    p50_ms_image=round(figures["image"][0], 3),
                    extra={
                        f"{stat}_{kind}": round(fig[i], 4)
                        for kind, fig in figures.items()
                        if kind not in ("text", "image")
                        for i, stat in ((0, "p50_ms"), (2, "recall10"))
                    },
                )
            )
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(r: Row) -> str:
    params = " ".join(f"{k}={v}" for k, v in r.params.items())
    return (
        f"| {r.n:>9,} | {r.index:<8} | {params:<32} | {r.build_s:>7.1f} | {r.mem_mb:>6.0f} "
        f"| {r.threads} | {r.p50_ms:>7.2f} | {r.p95_ms:>7.2f} | {r.recall10:.3f} "
        f"| {r.p50_ms_image:>7.2f} | {r.recall10_image:.3f} |"
        + "".join(f" {k}={v:g} |" for k, v in r.extra.items())
    )


HEADER = (
    "|         n | index    | parameters                       | build s | file MB | thr "
    "| text p50 ms | text p95 ms | text R@10 | image p50 ms | image R@10 |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def load_real(args: argparse.Namespace) -> npt.NDArray[np.float32] | None:
    """Real vectors from --vectors (.npy) or --library (its stored vectors, in id order)."""
    if args.vectors:
        return np.load(args.vectors).astype(np.float32)
    if args.library:
        from imgsearch.library import Library

        with Library.open(args.library) as lib:
            return np.concatenate([mat for _, mat in lib.vectors()]).astype(np.float32)
    return None


def real_text_queries(args: argparse.Namespace) -> npt.NDArray[np.float32]:
    """The --query-texts lines through the library's own text encoder (as `imgsearch query`)."""
    from imgsearch.search import Searcher

    lines = [ln.strip() for ln in args.query_texts.read_text().splitlines() if ln.strip()]
    with Searcher(args.library) as searcher:
        return np.stack([searcher.embed_text(t) for t in lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    ap.add_argument("--flat-sizes", type=ints, default=[50_000, 100_000, 200_000, 500_000])
    ap.add_argument("--flat-configs", default="flat,flatfp16")
    ap.add_argument("--sizes", type=ints, default=[1_000_000], help="sizes for --configs")
    ap.add_argument(
        "--configs",
        default="hnsw:M=32;hnsw:M=16;hnswsq8:M=32;ivf:nlist=4096;ivfsq8:nlist=4096",
        help="';'-separated, e.g. 'hnsw:M=32,efc=64;ivf:nlist=4096'",
    )
    ap.add_argument("--ef", type=ints, default=list(EF_SWEEP))
    ap.add_argument("--nprobe", type=ints, default=list(NPROBE_SWEEP))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--threads",
        type=ints,
        default=[1, os.cpu_count() or 1],
        help="faiss OpenMP thread counts to time searches with (the last one also builds)",
    )
    ap.add_argument("--vectors", type=Path, help="a .npy of real vectors instead of the mixture")
    ap.add_argument("--library", type=Path, help="the vectors of a real imgsearch library")
    ap.add_argument(
        "--query-texts",
        type=Path,
        help="with --library: a file of queries, one a line, embedded by the library's model",
    )
    ap.add_argument(
        "--text-gap",
        type=float,
        default=Mixture().text_gap,
        help="modality-gap offset of the text-like queries (0: in-distribution plus noise)",
    )
    ap.add_argument(
        "--extra-gaps",
        type=lambda t: [float(x) for x in t.split(",") if x],
        default=[],
        help="more text-like query sets with these modality gaps (sensitivity of the results)",
    )
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "vectors")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    import faiss

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    out = args.out or Path(__file__).parent / "results" / f"ann-{stamp}-{platform.node()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "machine": platform.node(),
        "cpu_count": os.cpu_count(),
        "faiss": faiss.__version__,
        "date": stamp,
        "mixture": asdict(replace(Mixture(), text_gap=args.text_gap)),
        "queries": args.queries,
        "argv": sys.argv[1:],
        "rows": [],
    }
    mix = replace(Mixture(), text_gap=args.text_gap)
    real = load_real(args)
    if real is not None:  # the last rows are the image-like queries
        real, held = real[: -args.queries], real[-args.queries :]
        queries = {"text": real_text_queries(args) if args.query_texts else held, "image": held}
        doc["vectors"] = str(args.vectors or args.library)
    else:
        queries = held_out(mix, args.queries)
        for gap in args.extra_gaps:
            queries[f"gap{gap:g}"] = text_like(replace(mix, text_gap=gap), args.queries, seed=7)
    flat = args.flat_configs.split(",")
    plan: list[tuple[int, str]] = [(n, c) for n in args.flat_sizes for c in flat]
    plan += [(n, c) for n in args.sizes for c in args.configs.split(";")]
    print(HEADER, flush=True)
    current: tuple[int, Any, Any] | None = None
    cache: dict[str, Any] = {}
    for n, config in plan:
        if current is None or current[0] != n:
            current = None
            cache.clear()
            if real is not None:
                base = np.ascontiguousarray(real[:n], dtype=np.float32)
            else:
                base = cached_sample(mix, n, seed=0, cache=args.cache)
            truth = {k: exact_neighbours(base, q, 10, first_id=0) for k, q in queries.items()}
            current = (n, base, truth)
        _, base, truth = current
        name, params = parse_config(config)
        for row in measure(name, params, base, queries, truth, args, cache):
            doc["rows"].append(asdict(row))
        out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
