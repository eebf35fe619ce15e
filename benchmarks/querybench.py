"""Query latency: a warm Searcher (text in, hits out) and a fresh `imgsearch query` process."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.corpus import evict_page_cache
from benchmarks.throughput import imgsearch_command, run_command
from benchmarks.vectorbench import percentiles_ms, time_each

if TYPE_CHECKING:
    from imgsearch.config import Settings

QUERIES = (
    "a dog on a beach",
    "sunset over the mountains",
    "a red car parked at night",
    "two children playing football",
    "birthday cake with candles",
    "snow covered forest",
    "a cat sleeping on a sofa",
    "city skyline from the air",
    "people dancing at a wedding",
    "a bowl of ramen",
    "old castle on a hill",
    "close-up of a flower with a bee",
)


def warm_query_latency(library: Path, settings: Settings, *, count: int = 100) -> dict[str, float]:
    """p50/p95 ms of Searcher.query(text) (text encoder + search + metadata) once warm, and
    p50 of its two parts alone: Searcher.embed_text and Searcher.search."""
    from imgsearch.search import Searcher

    def text(i: int) -> str:
        return QUERIES[i % len(QUERIES)]

    with Searcher(library, settings=settings) as searcher:
        p50, p95 = percentiles_ms(
            time_each(lambda i: searcher.query(text(i)), count, warmup=len(QUERIES))
        )
        embed, _ = percentiles_ms(time_each(lambda i: searcher.embed_text(text(i)), count))
        vectors = [searcher.embed_text(q) for q in QUERIES]
        search, _ = percentiles_ms(
            time_each(lambda i: searcher.nearest(vectors[i % len(vectors)]), count)
        )
    return {"p50_ms": p50, "p95_ms": p95, "embed_p50_ms": embed, "search_p50_ms": search}


def cold_query(library: Path, *, runs: int = 5, evict: bool = False) -> float:
    """Median wall seconds of a fresh `imgsearch query TEXT --library LIB` process.

    With `evict`, the library's files (database, FAISS file, ONNX weights) are dropped from
    the page cache before each run, as after a reboot; Python and its packages stay cached.
    """
    walls = []
    for i in range(runs + 1):
        if evict:
            evict_page_cache([p for p in library.rglob("*") if p.is_file()])
        args = [*imgsearch_command(), "query", QUERIES[i % len(QUERIES)], "--library", str(library)]
        run = run_command(args)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{run.stderr[-2000:]}")
        if i:  # the first run only warms the page cache for Python's own files
            walls.append(run.wall_s)
    return statistics.median(walls)


def process_start(code: str, *, runs: int = 5) -> float:
    """Median wall seconds of `python -c CODE` (interpreter start plus the imports in CODE)."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def cold_profile(library: Path, *, runs: int = 5) -> dict[str, float]:
    """Median seconds per step of a cold query, each run in a fresh process (profile_query.py)."""
    script = Path(__file__).with_name("profile_query.py")
    samples: list[dict[str, Any]] = []
    for i in range(runs + 1):
        out = subprocess.run(
            [sys.executable, str(script), str(library), QUERIES[i % len(QUERIES)]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        if i:
            samples.append(json.loads(out.strip().splitlines()[-1]))
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}
