"""Scaling up (issue 14): vectors out of the rows (float16 when asked), the index ladder by size
and memory budget, and building from storage in bounded memory. Small libraries only: the 10M
figures come from benchmarks/scale.py."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from imgsearch.library import DB_NAME, ImageRecord, Library
from imgsearch.modelspec import ModelSpec, PreprocessSpec
from imgsearch.vectors import IndexParams
from tests.test_vectors import clustered, recall, text_like

SPEC = ModelSpec("synthetic", "", 128, PreprocessSpec((32, 32), (0.5,) * 3, (0.5,) * 3))


def fill(folder, x: np.ndarray, precision: str | None = None) -> Library:
    lib = Library.open(folder, create=True)
    with lib.write_lock():
        lib.set_model_spec(SPEC, precision=precision)
        for start in range(0, len(x), 1000):
            lib.store(
                [
                    ImageRecord(f"/s/{i:06d}.jpg", 1, 1, f"{i:x}", 4, 4, None, x[i])
                    for i in range(start, min(len(x), start + 1000))
                ],
                [],
            )
    return lib


def test_float16_storage_halves_the_bytes_and_keeps_rankings_and_scores(tmp_path):
    x = clustered(6000, seed=3)
    q = text_like(x, 100)
    full = fill(tmp_path / "f32", x)
    half = fill(tmp_path / "f16", x, precision="float16")
    assert half.meta()["vector_format"] == "float16" and "vector_format" not in full.meta()
    con = sqlite3.connect(tmp_path / "f16" / DB_NAME)
    assert con.execute("SELECT length(vector) FROM vectors LIMIT 1").fetchone() == (2 * 128,)
    for params in (IndexParams(exact_max=10**6), IndexParams(exact_max=1000, nprobe=32)):
        s32, i32 = full.ann.current(params).search(q, 10)
        s16, i16 = half.ann.current(params).search(q, 10)
        assert recall(i32, i16) >= 0.99  # re-ranked / scanned from float16: same neighbours
        same = i32 == i16
        assert np.abs(s32[same] - s16[same]).max() < 2e-3  # scores within float16's precision
    full.close()
    half.close()


def test_the_precision_of_an_existing_library_does_not_change(tmp_path):
    lib = fill(tmp_path, clustered(50))
    with lib.write_lock():
        lib.set_model_spec(SPEC, precision="float16")  # already holds float32 vectors
    assert "vector_format" not in lib.meta()
    _, mat = lib.vectors_for_ids(np.array([1, 2]))
    np.testing.assert_array_equal(mat, clustered(50)[:2])
    lib.close()


def test_index_stores_float16_when_the_setting_asks(run, tiny_model, tmp_path, monkeypatch):
    from tests.conftest import make_pictures

    make_pictures(tmp_path / "pics", 12, seed=4)
    monkeypatch.setenv("IMGSEARCH_VECTOR_PRECISION", "float16")
    run("index", tmp_path / "pics", "--model", tiny_model)
    copy = tmp_path / "elsewhere" / "copy.png"  # embedded afresh in float32, not stored
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "pics" / "pic_003.png").read_bytes())
    top = json.loads(run("similar", copy, "--json").stdout)[0]
    assert top["path"].endswith("pic_003.png") and top["score"] == pytest.approx(1, abs=2e-3)
    with Library.open(tmp_path / "library") as lib:
        assert lib.meta()["vector_format"] == "float16"


GB = 1 << 30


@pytest.mark.parametrize(
    ("n", "budget", "key"),
    [
        (20_000, 4 * GB, "IDMap2,Flat"),
        (1_000_000, 4 * GB, "IVF8192,SQ8"),  # 520 MB of 8-bit codes: fits
        (10_000_000, 4 * GB, "IVF16384,PQ64x8"),  # SQ8 would take 5.2 GB
        (10_000_000, 500 << 20, "IVF16384,PQ32x8"),  # 400 MB: the largest PQ that fits
        (1_000_000, 256 << 20, "IVF4096,PQ64x8"),  # RAM short at 1M: PQ already
    ],
)
def test_the_ladder_picks_the_index_by_size_and_memory_budget(n, budget, key):
    from imgsearch import ladder

    rung = ladder.choose(n, 512, IndexParams(exact_max=30_000, memory_budget=budget))
    assert rung.key == key
    if rung.kind == "ivfpq":
        assert ladder.pq_bytes(n, 512, rung.nlist, rung.pq) <= budget


def test_memory_budget_setting_is_a_size(tmp_path):
    from imgsearch.config import ConfigError, resolve

    assert IndexParams.from_settings(resolve(environ={})).memory_budget == 4 * GB
    env = {"IMGSEARCH_MEMORY_BUDGET": "1.5 GB"}
    assert IndexParams.from_settings(resolve(environ=env)).memory_budget == int(1.5 * GB)
    with pytest.raises(ConfigError, match="memory_budget.*size such as 4GB"):
        resolve(environ={"IMGSEARCH_MEMORY_BUDGET": "lots"})


def test_a_small_budget_gets_memory_mapped_ivfpq_with_high_recall_and_updates_in_place(tmp_path):
    """A few thousand vectors with the thresholds forced down: the PQ rung, its lists read from
    the file (OnDiskInvertedLists), recall@10 against exact >= 0.95 after the exact re-rank, and
    an `index`-like update (adds, a delete) keeps the trained lists."""
    import faiss

    from imgsearch.config import resolve

    x = clustered(12_000, seed=5)
    q = text_like(x, 100)
    env = {"IMGSEARCH_EXACT_SEARCH_MAX": "1000", "IMGSEARCH_MEMORY_BUDGET": "300KB"}
    params = IndexParams.from_settings(resolve(environ={**env, "IMGSEARCH_IVF_NPROBE": "16"}))
    lib = fill(tmp_path, x[:9000], precision="float16")
    with lib.write_lock():
        lib.ann.save(params)
    meta = lib.meta()
    assert meta["faiss_kind"] == "ivfpq" and meta["faiss_trained"] == "9000"
    assert meta["faiss_key"] == "IVF128,PQ16x7"  # 9000 x (16 + 8) bytes + lists fit 300KB
    lib.close()

    lib = Library.open(tmp_path)  # a fresh process would open it like this
    index = lib.ann.current(params)
    assert index.kind == "ivfpq"  # re-ranks pq_rerank x k candidates
    invlists = faiss.extract_index_ivf(index.index).invlists
    assert isinstance(faiss.downcast_InvertedLists(invlists), faiss.OnDiskInvertedLists)
    exact = lib.ann.current(IndexParams(exact_max=10**6))
    _, want = exact.search(q, 10)
    scores, got = index.search(q, 10)
    assert recall(want, got) >= 0.95
    found, stored = lib.vectors_for_ids(got[0])
    exact_scores = dict(zip(found.tolist(), (stored @ q[0]).tolist()))
    assert scores[0] == pytest.approx([exact_scores[i] for i in got[0]], abs=1e-6)  # re-ranked
    lib.close()

    lib = fill(tmp_path, x)  # 3000 more (and the first 9000 rewritten)
    with lib.write_lock():
        lib.remove([1])
        lib.ann.save(params)
    meta = lib.meta()
    assert meta["faiss_kind"] == "ivfpq" and meta["faiss_trained"] == "9000"  # no new k-means
    assert meta["faiss_count"] == "11999"
    index = lib.ann.current(params)
    _, want = lib.ann.current(IndexParams(exact_max=10**6)).search(q, 10)
    _, got = index.search(q, 10)
    assert recall(want, got) >= 0.95 and 1 not in got
    lib.close()


def _list_of_each_vector(lib: Library, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, the list each is stored in, the list of its nearest centroid) of an IVF index."""
    import faiss

    ivf = faiss.extract_index_ivf(index.index)
    cents = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    ids, lists = [], []
    for number in range(ivf.nlist):
        size = ivf.invlists.list_size(number)
        if size:
            ptr = ivf.invlists.get_ids(number)
            ids.append(np.array(faiss.rev_swig_ptr(ptr, size)))
            ivf.invlists.release_ids(number, ptr)
            lists.append(np.full(size, number))
    found, mat = lib.vectors_for_ids(np.concatenate(ids))
    stored = dict(zip(np.concatenate(ids).tolist(), np.concatenate(lists).tolist()))
    return found, np.array([stored[i] for i in found.tolist()]), np.argmax(mat @ cents.T, axis=1)


def test_a_two_level_build_puts_each_vector_in_its_nearest_list(tmp_path, monkeypatch):
    """Above TWO_LEVEL_ABOVE lists k-means is two-level and a build assigns vectors through its
    coarse clusters (exact scores for 10M x 16384 take half an hour). Each vector must still
    land in its nearest centroid's list, since a query probes the lists nearest to it: an HNSW
    walk put only 38% of 10M clustered vectors there, and recall@10 stopped near 0.84. The
    saved index keeps a flat quantizer, so text-like queries find their lists."""
    import faiss

    from imgsearch import ladder

    monkeypatch.setattr(ladder, "TWO_LEVEL_ABOVE", 16)
    x = clustered(9000, seed=6)
    q = text_like(x, 100)
    params = IndexParams(exact_max=1000, nprobe=16, memory_budget=300 << 10)
    rung = ladder.choose(9000, 128, params)
    assert rung.kind == "ivfpq" and rung.nlist > ladder.TWO_LEVEL_ABOVE
    lib = fill(tmp_path, x)
    with lib.write_lock():
        lib.ann.save(params)
    assert lib.meta()["faiss_assign"] == "nearest"
    index = lib.ann.current(params)
    quantizer = faiss.downcast_index(faiss.extract_index_ivf(index.index).quantizer)
    assert isinstance(quantizer, faiss.IndexFlatIP) and index.ntotal == 9000
    ids, stored, nearest = _list_of_each_vector(lib, index)
    assert len(ids) == 9000 and np.mean(stored == nearest) >= 0.995
    _, want = lib.ann.current(IndexParams(exact_max=10**6)).search(q, 10)
    assert recall(want, index.search(q, 10)[1]) >= 0.95
    lib.close()


def test_an_ivfpq_file_from_an_hnsw_assigned_build_is_rebuilt_by_the_next_save(tmp_path):
    """A file built before the two-level assignment (no `faiss_assign` key) still answers
    queries, but the next writer builds it afresh (new k-means) instead of updating it in
    place, as it would a file of the current build (trained stays 9000 in
    test_a_small_budget_gets_memory_mapped_ivfpq_with_high_recall_and_updates_in_place)."""
    x = clustered(12000, seed=6)
    params = IndexParams(exact_max=1000, nprobe=16, memory_budget=300 << 10)
    lib = fill(tmp_path, x[:9000])
    with lib.write_lock():
        lib.ann.save(params)
        lib.set_meta(faiss_assign="")  # as an older build left it
    assert lib.ann.current(params).ntotal == 9000  # queries still use the file
    lib.close()
    lib = fill(tmp_path, x)  # 3000 more: within 2x of the trained size, so normally an update
    with lib.write_lock():
        lib.ann.save(params)
    meta = lib.meta()
    assert meta["faiss_assign"] == "nearest" and meta["faiss_kind"] == "ivfpq"
    assert meta["faiss_trained"] == "12000" and meta["faiss_count"] == "12000"  # rebuilt
    lib.close()
