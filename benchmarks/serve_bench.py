"""`imgsearch serve` figures (issue 12), measured, not asserted:

- serve_search_p50_ms_100k: GET /search.json?q=TEXT on a warm app over a synthetic N-image
  library (benchmarks/synthlib.py), in process (no socket): text encoder, ranking, one page of
  48 hits with their metadata and thumbnail keys, JSON. Every query text is new (no vector cache).
  serve_search_page_html_p50_ms: the whole HTML page on the same library (fewer requests);
  serve_facets_first_ms / _cached_p50_ms: the filter panel it then fetches, first and cached.
- serve_first_grid_s_cold / _warm: in Debian's chromium, from navigation to the first 24 grid
  thumbnails decoded, over full-size photos (../shared/photos/imagenet-500) with an empty
  thumbnail cache, then a warm one (a fresh browser profile both times: the server's cache only).
- serve_concurrent_errors: failed responses among 200 API requests (search, similar, photo,
  thumbnail) sent 16 at a time over loopback while `imgsearch index` writes to the library.

    python benchmarks/serve_bench.py                  # 100k library, all figures
    python benchmarks/serve_bench.py --quick          # 10k library, fewer queries

Writes benchmarks/results/serve-<stamp>-vm.json. Figures from a shared machine are labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import DEFAULT_CACHE  # noqa: E402
from benchmarks.querybench import QUERIES  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "photos" / "imagenet-500"
GRID = 24


def _settings() -> Any:
    from imgsearch import config

    return config.resolve(overrides={"device": "cpu"})


def synthetic(n: int, cache: Path) -> Path:
    """The cached synthetic library of n images (the same one benchmarks/run.py builds)."""
    from benchmarks import synthlib
    from benchmarks.synth import Mixture
    from benchmarks.throughput import MODEL, WEIGHTS

    settings, mix = _settings(), Mixture()
    path = cache / f"library-{n}-{synthlib.library_key(n, settings, mix)}"
    if not synthlib.is_complete(path, n):
        from imgsearch.encoder import load_encoder

        encoder = load_encoder(MODEL, WEIGHTS, "cpu")
        synthlib.synthetic_library(path, n, encoder, settings, mix=mix, cache=cache / "vectors")
    return path


def search_p50_ms(library: Path, count: int, tmp: Path) -> dict[str, float]:
    from starlette.testclient import TestClient

    from imgsearch.web import create_app

    app = create_app(library, _settings(), thumbs_dir=tmp / "thumbs-100k", opener=lambda p: None)
    times = []
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        for i in range(count + 5):
            t0 = time.perf_counter()
            r = client.get("/search.json", params={"q": f"{QUERIES[i % len(QUERIES)]} {i}"})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 200 and len(r.json()["hits"]) == 48, r.text[:200]
            if i >= 5:  # warm-up: model sessions, FAISS file, SQLite pages
                times.append(elapsed)
        pages, facets = [], []  # the HTML page adds the filter panel (Searcher.facets & co)
        for i in range(max(5, count // 5) + 1):
            t0 = time.perf_counter()
            r = client.get("/", params={"q": f"{QUERIES[i % len(QUERIES)]} page {i}"},
                           headers={"accept": "text/html"})  # fmt: skip
            pages.append(time.perf_counter() - t0)
            assert r.status_code == 200 and 'id="filters"' in r.text, r.text[:200]  # placeholder
            t0 = time.perf_counter()  # the panel, fetched by the page (cached after the first)
            assert client.get("/facets", params={"fragment": 1}).status_code == 200
            facets.append(time.perf_counter() - t0)
        searcher, direct = app.state.web.searcher, []
        for i in range(count):  # the same work without the web layer, for its overhead
            t0 = time.perf_counter()
            searcher.query(f"{QUERIES[i % len(QUERIES)]} direct {i}", k=49)
            direct.append(time.perf_counter() - t0)
    app.state.web.close()
    times.sort()
    return {
        "p50_ms": 1000 * statistics.median(times),
        "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
        "searcher_p50_ms": 1000 * statistics.median(direct),
        "html_p50_ms": 1000 * statistics.median(pages[1:]),
        "facets_first_ms": 1000 * facets[0],
        "facets_p50_ms": 1000 * statistics.median(facets[1:]),
    }


def photo_library(tmp: Path) -> Path:
    """A library of the imagenet-500 photos, read in place, with stand-in vectors (no
    embedding) and the folder recorded as its root, as `imgsearch index` leaves it."""
    from benchmarks.synthlib import seed_library
    from benchmarks.throughput import MODEL, WEIGHTS
    from imgsearch.encoder import load_encoder
    from imgsearch.library import Library

    spec = load_encoder(MODEL, WEIGHTS, "cpu").spec
    library = tmp / "photo-library"
    tree = os.path.realpath(PHOTOS)
    seed_library(library, Path(tree), spec, _settings())
    with Library.open(library) as lib, lib.write_lock():
        lib.add_root(tree, os.stat(tree).st_dev)
    return library


def first_grid_seconds(base: str) -> float:
    from tests.support.web import chromium

    with chromium() as context:
        page = context.new_page()
        page.goto(base + "/?similar=1", wait_until="commit")
        page.wait_for_function(
            f"() => {{ const i = [...document.querySelectorAll('.hit img')].slice(0, {GRID});"
            f" return i.length === {GRID} && i.every(x => x.complete && x.naturalWidth > 0) }}",
            timeout=120_000,
            polling="raf",
        )
        return page.evaluate("performance.now()") / 1000


def grid_times(library: Path, tmp: Path) -> dict[str, float]:
    from imgsearch.web import create_app
    from tests.support.web import serving

    thumbs = tmp / "thumbs-grid"
    shutil.rmtree(thumbs, ignore_errors=True)
    app = create_app(library, _settings(), thumbs_dir=thumbs, opener=lambda p: None)
    with serving(app) as base:
        cold = first_grid_seconds(base)
        warm = statistics.median(first_grid_seconds(base) for _ in range(3))
    app.state.web.close()
    return {"cold_s": cold, "warm_s": warm}


def concurrent_errors(library: Path, tmp: Path, requests: int = 200) -> dict[str, Any]:
    from benchmarks.throughput import MODEL, WEIGHTS, imgsearch_command
    from imgsearch.web import create_app
    from tests.support.shapes import write_pictures
    from tests.support.web import serving

    extra = tmp / "more"
    write_pictures(extra, per_class=15, seed=3, size=160, fmt="jpg")  # 300 new files to index
    app = create_app(library, _settings(), thumbs_dir=tmp / "thumbs-conc", opener=lambda p: None)
    errors: list[str] = []
    with serving(app) as base:
        index = subprocess.Popen(
            [*imgsearch_command(), "index", str(extra), "--library", str(library),
             "--model", MODEL, "--pretrained", WEIGHTS, "--device", "cpu", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3)  # the run has taken the write lock and is loading the model
        urls = [
            "/search.json?similar={i}",
            "/photo/{i}.json",
            "/thumb/{i}/256",
            "/search.json?similar={i}&size=10",
        ]

        def fetch(i: int) -> None:
            url = base + urls[i % len(urls)].format(i=1 + i % 400)
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    r.read()
            except Exception as exc:  # any failure counts, whatever its kind
                errors.append(f"{url}: {exc}")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(fetch, range(requests)))
        seconds = time.perf_counter() - t0
        overlapped = index.poll() is None
        _, err = index.communicate(timeout=600)
    app.state.web.close()
    return {
        "errors": len(errors),
        "requests": requests,
        "seconds": seconds,
        "index_running_throughout": overlapped,
        "index_exit": index.returncode,
        "index_stderr_tail": err[-300:],
        "first_errors": errors[:5],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k library, 30 queries")
    ap.add_argument("--n", type=int, help="synthetic library size (default 100000)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--skip", nargs="*", default=[], choices=["search", "grid", "concurrent"])
    args = ap.parse_args()
    n = args.n or (10_000 if args.quick else 100_000)
    out: dict[str, Any] = {
        "machine": "shared 2-core VM, other engineers' jobs running: indicative figures only",
        "n": n,
    }
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp / "xdg-cache"))
    try:
        if "search" not in args.skip:
            res = search_p50_ms(synthetic(n, args.cache), 30 if args.quick else 100, tmp)
            out[f"serve_search_p50_ms_{n // 1000}k"] = round(res["p50_ms"], 2)
            out["serve_search_p95_ms"] = round(res["p95_ms"], 2)
            out["searcher_query_p50_ms_same_library"] = round(res["searcher_p50_ms"], 2)
            out["serve_search_page_html_p50_ms"] = round(res["html_p50_ms"], 2)
            out["serve_facets_first_ms"] = round(res["facets_first_ms"], 2)
            out["serve_facets_cached_p50_ms"] = round(res["facets_p50_ms"], 2)
            print(json.dumps(out), flush=True)
        if PHOTOS.is_dir() and ({"grid", "concurrent"} - set(args.skip)):
            library = photo_library(tmp)
            if "grid" not in args.skip:
                res = grid_times(library, tmp)
                out["serve_first_grid_s_cold"] = round(res["cold_s"], 3)
                out["serve_first_grid_s_warm"] = round(res["warm_s"], 3)
                print(json.dumps(out), flush=True)
            if "concurrent" not in args.skip:
                res = concurrent_errors(library, tmp)
                out["serve_concurrent_errors"] = res.pop("errors")
                out["serve_concurrent"] = res
        elif not PHOTOS.is_dir():
            out["skipped"] = f"no photos at {PHOTOS}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M", time.gmtime())
    path = args.out / f"serve-{stamp}{'-quick' if args.quick else ''}-vm.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
