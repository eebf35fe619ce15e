"""Filtered search above the exact switch point, planned by selectivity (imgsearch/filtered.py):
a broad filter post-filters the unfiltered IVF's candidates, a selective one probes only the
lists holding allowed ids; both return exactly k allowed hits, equal to brute force over the
allowed set here; the allowed sets are cached per committed state and follow every write."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imgsearch import config, filterset
from imgsearch.library import DB_NAME, ImageRecord, Library
from imgsearch.modelspec import ModelSpec, PreprocessSpec
from imgsearch.photo import PhotoMeta
from imgsearch.query import Filter, Query
from imgsearch.search import Searcher
from imgsearch.vectors import IndexParams
from tests.test_vectors import clustered, text_like

DIM, N, K = 64, 3000, 10
SPEC = ModelSpec("test", "", DIM, PreprocessSpec((32, 32), (0.5,) * 3, (0.5,) * 3))


def _meta(camera: str | None, day: int) -> PhotoMeta:
    return PhotoMeta(
        f"2000-01-{day:02d}T12:00:00", "DateTimeOriginal", camera and "Google", camera,
        None, None, None, None, 1, 1, 1, "jpeg", "/p",
    )  # fmt: skip


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, list[str | None]]:
    """3000 clustered vectors in an IVF-SQ8 library; row i (id i + 1) taken on day days[i]
    (1: 10%, 2: 20%, 3: 70%), camera Pixel 7 on 10%, unknown on 10%, EOS on the rest."""
    x = clustered(N, dim=DIM, clusters=40, seed=4)
    rng = np.random.default_rng(3)
    days = rng.choice([1, 2, 3], size=N, p=[0.1, 0.2, 0.7])
    cameras = list(
        rng.choice(np.array(["Pixel 7", "", "EOS R5"], dtype=object), N, p=[0.1, 0.1, 0.8])
    )
    cameras = [c or None for c in cameras]
    lib = Library.open(tmp_path / "lib", create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(SPEC)
        lib.store(
            [
                ImageRecord(f"/p/{i:05d}.jpg", 1, 0, f"{i}", 1, 1,
                            _meta(cameras[i], int(days[i])).taken_at, x[i],
                            meta=_meta(cameras[i], int(days[i])))
                for i in range(N)
            ],
            [],
        )  # fmt: skip
        lib.ann.save(IndexParams(exact_max=500))
        assert lib.meta()["faiss_kind"] == "ivf"
    return tmp_path / "lib", x, days, cameras


def _searcher(path: Path, **settings: object) -> Searcher:
    base = dict(exact_search_max=500, ivf_nprobe=64, ivf_rerank=20)  # 64 lists: all of them
    return Searcher(path, settings=dataclasses.replace(config.resolve(), **(base | settings)))


def _brute(x: np.ndarray, q: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    rows = np.flatnonzero(allowed)
    return (rows[np.argsort(-(x[rows] @ q), kind="stable")[:k]] + 1).tolist()


def _ids(result) -> list[int]:
    return [h.id for h in result.hits]


def test_broad_filters_post_filter_and_return_exactly_k_allowed_hits(library):
    path, x, days, _ = library
    queries = text_like(x, 6)
    with _searcher(path) as s:
        for q in queries:
            everything = s.nearest(q, Query(filters=(Filter("before", ("2000-01-04",)),), k=K))
            assert everything.strategy == "ivf-postfiltered" and everything.matched == N
            assert _ids(everything) == _ids(s.nearest(q, Query(k=K)))
            most = s.nearest(q, Query(filters=(Filter("after", ("2000-01-02",)),), k=K))
            assert most.strategy == "ivf-postfiltered" and most.matched == int((days >= 2).sum())
            assert _ids(most) == _brute(x, q, days >= 2, K)


def test_a_broad_negated_filter_keeps_unknown_values_and_leaves_out_the_rest(library):
    path, x, _, cameras = library
    allowed = np.array([c != "Pixel 7" for c in cameras])  # no camera (unknown) is kept
    with _searcher(path) as s:
        for q in text_like(x, 6, seed=8):
            got = s.nearest(q, Query(filters=(Filter("camera", ("pixel",), negate=True),), k=K))
            assert got.strategy == "ivf-postfiltered" and got.matched == int(allowed.sum())
            assert _ids(got) == _brute(x, q, allowed, K)
            assert all(cameras[i - 1] != "Pixel 7" for i in _ids(got))


def _redate(path: Path, rows: np.ndarray) -> None:
    """Day 1 for `rows`, day 9 for every other row (no new generation: metadata only)."""
    con = sqlite3.connect(path / DB_NAME)
    con.execute("UPDATE images SET taken_at = '2000-01-09T00:00:00'")
    con.executemany(
        "UPDATE images SET taken_at = '2000-01-01T00:00:00' WHERE id = ?",
        [(int(i) + 1,) for i in rows],
    )
    con.commit()
    con.close()


def test_a_selective_filter_probes_only_the_lists_holding_allowed_ids(library, monkeypatch):
    """The allowed rows fill the 8 IVF lists farthest from the query: the nearest lists hold
    none, yet one search finds the exact answer, probing just those 8."""
    from imgsearch import ladder, vectors

    path, x, _, _ = library
    q = text_like(x, 1, seed=9)[0]
    with _searcher(path) as s:
        index = s.library.ann.current(IndexParams.from_settings(s.settings))
        where = vectors.list_of(index)[1 : N + 1]
        cents = index.index.quantizer.reconstruct_n(0, index.index.nlist)
    far = np.argsort(cents @ q)[:8]
    rows = np.flatnonzero(np.isin(where, far))
    assert 256 < len(rows) < 0.25 * N
    _redate(path, rows)
    allowed = np.zeros(N, dtype=bool)
    allowed[rows] = True
    calls = []
    real = ladder.search_params
    monkeypatch.setattr(ladder, "search_params", lambda *a: calls.append(a) or real(*a))
    with _searcher(path, ivf_nprobe=2, ivf_rerank=4) as s:
        got = s.nearest(q, Query(filters=(Filter("before", ("2000-01-02",)),), k=K))
    assert got.strategy == "ivf-filtered" and got.matched == len(rows)
    assert _ids(got) == _brute(x, q, allowed, K)
    assert len(calls) == 1 and calls[0][2] == 8  # one search, 8 lists


def test_a_filter_the_query_avoids_widens_and_still_returns_k(library, tmp_path):
    """The allowed 30% are the rows farthest from the query: the unfiltered candidates hold
    none of them, so the post-filter widens, hands over, and the answer is still exact."""
    path, x, _, _ = library
    q = text_like(x, 1, seed=11)[0]
    far = np.argsort(x @ q)[: int(0.3 * N)]
    _redate(path, far)
    allowed = np.zeros(N, dtype=bool)
    allowed[far] = True
    with _searcher(path, ivf_nprobe=4, ivf_rerank=4) as s:
        got = s.nearest(q, Query(filters=(Filter("before", ("2000-01-02",)),), k=K))
        assert got.matched == len(far) and len(got.hits) == K
        assert got.strategy in ("ivf-filtered", "exact-subset")
        assert set(_ids(got)) <= set((far + 1).tolist())
        assert _ids(got) == _brute(x, q, allowed, K)


def test_the_cache_serves_repeats_and_follows_writes_that_keep_the_generation(library, monkeypatch):
    path, x, days, _ = library
    q = text_like(x, 1, seed=12)[0]
    built = []
    real = filterset.build
    monkeypatch.setattr(filterset, "build", lambda *a: built.append(a) or real(*a))
    query = Query(filters=(Filter("before", ("2000-01-02",)),), k=K)
    with _searcher(path) as s:
        first = s.nearest(q, query)
        assert s.nearest(q, query).hits == first.hits and len(built) == 1  # cached
        moved = [int(i) + 1 for i in np.flatnonzero(days == 2)[:50]]
        gen = Library.open(path).generation()
        with Library.open(path) as writer, writer.write_lock():  # metadata: same generation
            writer.set_metadata([(i, "/p", _meta("EOS R5", 1)) for i in moved])
            assert writer.generation() == gen
        again = s.nearest(q, query)
        assert len(built) == 2 and again.matched == first.matched + len(moved)
        allowed = days == 1
        allowed[np.array(moved) - 1] = True
        assert _ids(again) == _brute(x, q, allowed, K)


def test_the_cache_is_bounded_in_entries_and_bytes(library):
    path, x, _, _ = library
    with _searcher(path) as s:
        s._filters = filterset.FilterCache(entries=2, budget=1 << 30)
        for day in ("2000-01-02", "2000-01-03", "2000-01-04"):
            s.nearest(x[0], Query(filters=(Filter("before", (day,)),), k=K))
        assert len(s._filters._items) == 2
        s._filters = filterset.FilterCache(entries=10, budget=1)
        for day in ("2000-01-02", "2000-01-03"):
            s.nearest(x[0], Query(filters=(Filter("before", (day,)),), k=K))
        assert len(s._filters._items) == 1  # the newest stays, however big


def test_a_missing_root_is_left_out_of_every_plan(tmp_path):
    """Half the library lives under a root that is gone: unfiltered and filtered searches
    (post-filtered, filtered) leave its images out and say so, with exactly k hits."""
    x = clustered(N, dim=DIM, clusters=40, seed=5)
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    gone.mkdir()
    lib = Library.open(tmp_path / "lib", create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(SPEC)
        roots = [lib.add_root(str(kept), None), lib.add_root(str(gone), None)]
        lib.store(
            [
                ImageRecord(f"{(kept, gone)[i % 2]}/{i:05d}.jpg", 1, 0, f"{i}", 1, 1,
                            f"2000-01-0{1 + (i % 10 == 0)}T00:00:00", x[i], root_id=roots[i % 2])
                for i in range(N)
            ],
            [],
        )  # fmt: skip
        lib.ann.save(IndexParams(exact_max=500))
    gone.rmdir()
    present = np.arange(N) % 2 == 0
    early = np.arange(N) % 10 != 0  # day 1
    with _searcher(tmp_path / "lib") as s:
        for q in text_like(x, 3, seed=13):
            plain = s.nearest(q, Query(k=K))
            assert plain.strategy == "ivf-postfiltered" and plain.matched is None
            assert [p for p, _, _ in plain.left_out] == [str(gone)]
            assert _ids(plain) == _brute(x, q, present, K)
            broad = s.nearest(q, Query(filters=(Filter("before", ("2000-01-02",)),), k=K))
            assert broad.matched == int((present & early).sum())
            assert _ids(broad) == _brute(x, q, present & early, K)
            narrow = s.nearest(q, Query(filters=(Filter("after", ("2000-01-02",)),), k=K))
            assert narrow.strategy == "ivf-filtered"
            assert _ids(narrow) == _brute(x, q, present & ~early, K)


def test_the_pq_rung_plans_the_same_way(tmp_path):
    """Under a small memory budget (IVF-PQ, lists read from the file) the same plans apply,
    with exactly k allowed hits and the exact re-rank's recall."""
    x = clustered(N, dim=DIM, clusters=40, seed=6)
    days = np.where(np.arange(N) % 10 == 0, 1, 3)
    lib = Library.open(tmp_path / "lib", create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(SPEC)
        lib.store(
            [
                ImageRecord(f"/p/{i:05d}.jpg", 1, 0, f"{i}", 1, 1,
                            f"2000-01-0{days[i]}T00:00:00", x[i])
                for i in range(N)
            ],
            [],
        )  # fmt: skip
        lib.ann.save(IndexParams(exact_max=500, memory_budget=100_000))
        assert lib.meta()["faiss_kind"] == "ivfpq"
    found = []
    with _searcher(tmp_path / "lib", memory_budget="100KB") as s:
        for q in text_like(x, 4, seed=14):
            for flt, allowed, plan in (
                (Filter("after", ("2000-01-02",)), days == 3, "ivfpq-postfiltered"),
                (Filter("before", ("2000-01-02",)), days == 1, "ivfpq-filtered"),
            ):
                got = s.nearest(q, Query(filters=(flt,), k=K))
                assert got.strategy == plan and got.matched == int(allowed.sum())
                assert len(got.hits) == K and all(allowed[i - 1] for i in _ids(got))
                found.append(len(set(_ids(got)) & set(_brute(x, q, allowed, K))) / K)
    assert np.mean(found) >= 0.9
