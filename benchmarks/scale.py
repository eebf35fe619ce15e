"""Scale benchmark (issue 14): a library of N synthetic images built through the library's own
code path, its index chosen by the ladder, then single-query search latency and recall@10.

    python benchmarks/scale.py --n 10000000 --library /tmp/scale-10m          # the 10M run
    python benchmarks/scale.py --n 1000000 --memory-budget 256MB               # RAM short at 1M

Each phase runs in a process of its own so that its peak RSS is its own:

  fill   N clustered 512-d vectors (benchmarks/synth.py's mixture, drawn in chunks) stored with
         `Library.store` in batches, float16 (`vector_precision`), as `imgsearch index` stores;
         only the embedding is bypassed (no model can embed 10M images here).
  build  `Library.ann.save`: the ladder picks the rung for the `memory_budget`; k-means and PQ
         codebooks train on a sample read by id, vectors are added in chunks read from SQLite.
  truth  exact top-10 of the queries over the stored vectors (numpy, in chunks).
  query  a fresh process opens the library (the index file memory-mapped) and times one query
         at a time through `VectorIndex.search` inside `Library.reading()` (ANN + exact re-rank
         from SQLite), as `Searcher` does, sweeping nprobe and the re-rank depth.

Writes benchmarks/results/scale-<n>-<date>-vm.json with the `*_10m` keys (or `*_<n>`).
Latencies are measured on whatever else the machine is doing: say so next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synth import Mixture, sample, text_like  # noqa: E402

CHUNK = 100_000  # vectors drawn at a time (each chunk its own seed of the same mixture)
STORE_BATCH = 5_000  # rows per Library.store transaction
QUERIES = 200
K = 10


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(args: argparse.Namespace) -> Any:
    from imgsearch.config import resolve

    return resolve(
        environ={},
        overrides={"memory_budget": args.memory_budget, "vector_precision": "float16"},
    )


def fill(args: argparse.Namespace) -> dict[str, Any]:
    from imgsearch.library import ImageRecord, Library
    from imgsearch.modelspec import ModelSpec, PreprocessSpec

    mix = Mixture()
    spec = ModelSpec(
        "ViT-B-32", "synthetic", mix.dim, PreprocessSpec((224, 224), (0.5,) * 3, (0.5,) * 3)
    )
    start = time.perf_counter()
    lib = Library.open(args.library, create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(spec, precision=settings_for(args).vector_precision)
        done = lib.vector_count()
        for first in range(done - done % CHUNK, args.n, CHUNK):  # resumable after a stop
            vecs = sample(mix, min(CHUNK, args.n - first), seed=1000 + first // CHUNK)
            for lo in range(0, len(vecs), STORE_BATCH):
                at = first + lo
                if at < done:
                    continue
                lib.store(
                    [
                        ImageRecord(
                            f"/synthetic/{i // 1000:05d}/{i:08d}.jpg",
                            100_000 + i,
                            1_700_000_000_000_000_000 + i,
                            f"{i:032x}",
                            640,
                            480,
                            None,
                            v,
                        )  # fmt: skip
                        for i, v in zip(range(at, at + STORE_BATCH), vecs[lo : lo + STORE_BATCH])
                    ],
                    [],
                )
            print(f"fill {first + len(vecs)} / {args.n}  {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {"fill_s": time.perf_counter() - start, "fill_peak_rss_mb": peak_rss_mb()}


def build(args: argparse.Namespace) -> dict[str, Any]:
    from imgsearch.library import Library
    from imgsearch.vectors import IndexParams

    start = time.perf_counter()
    with Library.open(args.library) as lib, lib.write_lock():
        lib.ann.save(IndexParams.from_settings(settings_for(args)))
        meta = lib.meta()
    return {
        "build_s": time.perf_counter() - start,
        "build_peak_rss_mb": peak_rss_mb(),
        "index": meta.get("faiss_key"),
        "index_file_mb": (Path(args.library) / meta["faiss_file"]).stat().st_size / 2**20,
    }


def queries() -> dict[str, np.ndarray]:
    mix = Mixture()
    return {"text": text_like(mix, QUERIES, seed=7), "image": sample(mix, QUERIES, seed=999_999)}


def truth(args: argparse.Namespace) -> dict[str, Any]:
    from imgsearch.library import Library

    qs = queries()
    q = np.concatenate(list(qs.values()))
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    start = time.perf_counter()
    with Library.open(args.library) as lib:
        for ids, mat in lib.vectors(batch=200_000):
            scores = q @ mat.T
            both_s = np.concatenate([best_s, scores], axis=1)
            both_i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
            top = np.argpartition(-both_s, K, axis=1)[:, :K]
            best_s = np.take_along_axis(both_s, top, 1)
            best_i = np.take_along_axis(both_i, top, 1)
    np.save(Path(args.library) / "truth.npy", best_i)
    return {"truth_s": time.perf_counter() - start}


def list_health(lib: Any, index: Any, count: int = 20_000) -> dict[str, Any]:
    """How the build filled the lists: their sizes, and the share of `count` stored vectors
    drawn at random that sit in their nearest centroid's list (a query probes the lists nearest
    to it, so a vector elsewhere is one it can miss)."""
    import faiss

    ivf = faiss.extract_index_ivf(index.index)
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    ids = np.empty(int(sizes.sum()), np.int64)
    at = 0
    for number in np.flatnonzero(sizes):
        ptr = ivf.invlists.get_ids(int(number))
        ids[at : at + sizes[number]] = faiss.rev_swig_ptr(ptr, int(sizes[number]))
        ivf.invlists.release_ids(int(number), ptr)
        at += sizes[number]
    owner = np.repeat(np.arange(ivf.nlist), sizes)
    pick = np.random.default_rng(3).choice(len(ids), min(count, len(ids)), replace=False)
    found, mat = lib.vectors_for_ids(np.sort(ids[pick]))
    where = dict(zip(ids[pick].tolist(), owner[pick].tolist()))
    nearest = np.argmax(mat @ ivf.quantizer.reconstruct_n(0, ivf.nlist).T, axis=1)
    stored = np.array([where[i] for i in found.tolist()])
    return {
        "assign_nearest_fraction": float(np.mean(stored == nearest)),
        "list_size_median": float(np.median(sizes)),
        "list_size_p99": float(np.percentile(sizes, 99)),
        "list_size_max": int(sizes.max()),
    }


def query(args: argparse.Namespace) -> dict[str, Any]:
    from imgsearch.library import Library
    from imgsearch.vectors import IndexParams

    qs = queries()
    want = np.load(Path(args.library) / "truth.npy")
    base = IndexParams.from_settings(settings_for(args))
    tried = []
    with Library.open(args.library) as lib:
        start = time.perf_counter()
        loaded = lib.ann.current(base)
        load_s = time.perf_counter() - start
        for nprobe in args.nprobe:
            for rerank in args.rerank:
                params = replace(base, nprobe=nprobe, pq_rerank=rerank)
                row: dict[str, Any] = {"nprobe": nprobe, "pq_rerank": rerank}
                for offset, (name, q) in enumerate(qs.items()):
                    times, got = [], []
                    with lib.reading():
                        index = lib.ann.current(params)
                        for vec in q[:20]:  # warm-up: the pages of the lists and rows touched
                            index.search(vec[None, :], K)
                        for vec in q:
                            t = time.perf_counter()
                            _, ids = index.search(vec[None, :], K)
                            times.append(time.perf_counter() - t)
                            got.append(ids[0])
                    truth_rows = want[offset * QUERIES : (offset + 1) * QUERIES]
                    hits = [len(set(a) & set(b)) / K for a, b in zip(truth_rows, got)]
                    row[f"p50_ms_{name}"] = float(np.percentile(times, 50) * 1000)
                    row[f"p95_ms_{name}"] = float(np.percentile(times, 95) * 1000)
                    row[f"recall10_{name}"] = float(np.mean(hits))
                print(json.dumps(row), file=sys.stderr, flush=True)
                tried.append(row)
        peak = peak_rss_mb()  # before list_health, which holds every id of the index
        health = list_health(lib, loaded) if loaded.kind != "flat" else {}
        print(json.dumps(health), file=sys.stderr, flush=True)
    return {"index_load_s": load_s, "query_peak_rss_mb": peak, "lists": health, "tried": tried}


PHASES = {"fill": fill, "build": build, "truth": truth, "query": query}


def run_phase(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    out = Path(args.library) / f"phase-{phase}.json"
    cmd = [
        sys.executable, __file__, "--phase", phase, "--n", str(args.n),
        "--library", str(args.library), "--memory-budget", args.memory_budget,
        "--nprobe", ",".join(map(str, args.nprobe)), "--rerank", ",".join(map(str, args.rerank)),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def disk_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--library", type=Path, default=Path("/tmp/imgsearch-scale"))
    ap.add_argument("--memory-budget", default="4GB")
    ap.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64])
    ap.add_argument("--rerank", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16])
    ap.add_argument("--phase", choices=sorted(PHASES))
    ap.add_argument("--phases", default="fill,build,truth,query")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.phase:
        result = PHASES[args.phase](args)
        (args.library / f"phase-{args.phase}.json").write_text(json.dumps(result))
        return
    args.library.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "n": args.n, "dim": Mixture().dim, "memory_budget": args.memory_budget,
        "vector_precision": "float16", "queries": QUERIES, "k": K,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, shared with other sessions (busy: latencies inflated)",
        "load_at_start": os.getloadavg(),
    }  # fmt: skip
    for phase in args.phases.split(","):
        record[phase] = run_phase(args, phase)
        record[f"load_after_{phase}"] = os.getloadavg()
    record["library_disk_gb"] = disk_gb(args.library)
    suffix = f"{args.n // 10**6}m" if args.n % 10**6 == 0 else f"{args.n // 1000}k"
    if "query" in record:
        s = settings_for(args)  # the headline: the shipped defaults, if they were tried
        default = next(
            (
                r
                for r in record["query"]["tried"]
                if (r["nprobe"], r["pq_rerank"]) == (s.ivf_nprobe, s.pq_rerank)
            ),
            record["query"]["tried"][-1],
        )
        record["headline"] = {"nprobe": default["nprobe"], "pq_rerank": default["pq_rerank"]}
        record[f"search_p50_ms_{suffix}"] = default["p50_ms_text"]
        record[f"search_recall10_{suffix}"] = default["recall10_text"]
        record[f"query_peak_rss_mb_{suffix}"] = record["query"]["query_peak_rss_mb"]
    if "build" in record:
        record[f"build_s_{suffix}"] = record["build"]["build_s"]
        record[f"build_peak_rss_mb_{suffix}"] = record["build"]["build_peak_rss_mb"]
    record[f"library_disk_gb_{suffix}"] = record["library_disk_gb"]
    date = datetime.now(timezone.utc).strftime("%Y%m%d")
    out = args.out or Path(__file__).parent / "results" / f"scale-{suffix}-{date}-vm.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
