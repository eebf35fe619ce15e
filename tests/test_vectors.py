"""The FAISS side: exact below the switch point, IVF above it with measured recall and exact
re-ranking, filters, and in-place updates of a library's IVF file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsearch import vectors
from imgsearch.library import ImageRecord, Library
from imgsearch.modelspec import ModelSpec, PreprocessSpec
from imgsearch.vectors import IndexParams


def clustered(n: int, dim: int = 128, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters, like real embeddings (uniform noise has no neighbours to find)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + 0.6 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def text_like(x: np.ndarray, n: int, seed: int = 5) -> np.ndarray:
    """Queries off the data's own distribution, as CLIP text vectors sit relative to images:
    a data point's direction plus a shared offset (the 'modality gap') and noise."""
    rng = np.random.default_rng(seed)
    gap = rng.normal(size=x.shape[1])
    gap *= 1.5 / np.linalg.norm(gap)
    q = x[rng.integers(len(x), size=n)] + gap + 0.3 * rng.normal(size=(n, x.shape[1])) / 11
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32)


def build(x: np.ndarray, exact_max: int, *, rerank: int = 4) -> vectors.VectorIndex:
    ids = np.arange(10, 10 + len(x), dtype=np.int64)
    index = vectors.build(
        [(ids, x)], dim=x.shape[1], params=IndexParams(exact_max, nprobe=32, rerank=rerank)
    )
    index.fetch = lambda wanted: (wanted, x[wanted - 10])
    return index


def recall(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(want, got)]))


def test_exact_below_the_switch_point_approximate_above():
    x = clustered(2000)
    assert build(x, exact_max=2000).kind == "flat"
    assert build(x, exact_max=1999).kind == "ivf"


@pytest.mark.parametrize(
    ("n", "nlist"), [(1_000_000, 8192), (100_000, 2048), (30_001, 512), (2000, 32), (10, 1)]
)
def test_list_count_grows_with_the_library_and_k_means_has_enough_points(n, nlist):
    assert vectors.nlist_for(n) == nlist
    assert nlist == 1 or n >= vectors.MIN_TRAIN_PER_LIST * nlist


def test_exact_search_returns_true_neighbours_with_row_ids():
    x = clustered(2000)
    index = build(x, exact_max=10_000)
    scores, ids = index.search(x[:5], 3)
    assert list(ids[:, 0]) == [10, 11, 12, 13, 14]  # each vector finds itself, by row id
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert ids[0].tolist() == (np.argsort(-(x @ x[0]))[:3] + 10).tolist()
    assert scores[0, 1] == pytest.approx(float(np.sort(x @ x[0])[-2]), abs=1e-5)


@pytest.mark.parametrize("queries", ["image-like", "text-like"])
def test_ivf_recall_at_10_against_exact(queries):
    both = clustered(20_200, seed=1)  # held-out queries from the same distribution
    x = both[:20_000]
    q = both[20_000:] if queries == "image-like" else text_like(x, 200)
    exact = build(x, exact_max=10**9)
    approx = build(x, exact_max=1000)
    assert approx.kind == "ivf"
    _, want = exact.search(q, 10)
    _, got = approx.search(q, 10)
    r = recall(want, got)
    print(f"IVF-SQ8 + re-rank recall@10 on 20k clustered vectors ({queries} queries): {r:.4f}")
    assert r >= 0.98


def test_reranked_scores_are_the_exact_cosines():
    x = clustered(5000, seed=2)
    q = text_like(x, 20)
    index = build(x, exact_max=100)
    scores, ids = index.search(q, 10)
    for row in range(len(q)):
        np.testing.assert_allclose(scores[row], x[ids[row] - 10] @ q[row], atol=1e-6)
        assert (np.diff(scores[row]) <= 1e-7).all()  # best first


def test_without_re_ranking_recall_is_capped_by_the_8_bit_codes():
    """Why re-ranking exists: the 8-bit scores alone confuse close neighbours."""
    x = clustered(20_000, seed=1)
    q = text_like(x, 200)
    _, want = build(x, exact_max=10**9).search(q, 10)
    raw = build(x, exact_max=1000)
    raw.fetch = None
    _, plain = raw.search(q, 10)
    _, reranked = build(x, exact_max=1000).search(q, 10)
    assert recall(want, reranked) > recall(want, plain)


@pytest.mark.parametrize(
    ("exact_max", "step", "last"),
    [(10**9, 7, 3010), (100, 7, 3010), (100, 50, 3010), (100, 3, 1010)],
    ids=["flat", "ivf-filtered", "ivf-small-subset-exact", "ivf-filtered-low-ids"],
)
def test_allowed_ids_restrict_results(exact_max, step, last):
    x = clustered(3000, seed=3)
    index = build(x, exact_max=exact_max)
    allowed = np.arange(10, last, step, dtype=np.int64)  # 429, 60 or 334 ids
    k = 20
    _, ids = index.search(x[:4], k, allowed)
    found = ids[ids >= 0]
    assert len(found) == 4 * k and set(found.tolist()) <= set(allowed.tolist())
    if len(allowed) <= exact_max:  # flat, or a subset small enough to score exactly
        for row in range(4):
            want = allowed[np.argsort(-(x[allowed - 10] @ x[row]), kind="stable")[:k]]
            assert ids[row].tolist() == want.tolist()


def test_empty_index_returns_no_hits():
    index = vectors.build([], dim=16, params=IndexParams(exact_max=10))
    scores, ids = index.search(np.ones((1, 16), np.float32) / 4, 5)
    assert (ids == -1).all()


def test_save_then_files_are_swapped_atomically(tmp_path):
    x = clustered(100)
    index = build(x, exact_max=1000)
    name = vectors.save(tmp_path, index, 7)
    assert name == "vectors-7.faiss" and (tmp_path / name).is_file()
    vectors.save(tmp_path, index, 8)
    vectors.remove_stale_files(tmp_path, keep="vectors-8.faiss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors-8.faiss"]


# ---- a library's IVF file across index runs -----------------------------------------------
DIM = 64
SPEC = ModelSpec("test", "", DIM, PreprocessSpec((32, 32), (0.5,) * 3, (0.5,) * 3))
PARAMS = IndexParams(exact_max=500, nprobe=16, rerank=4)


def store(lib: Library, first: int, x: np.ndarray, tag: str = "") -> None:
    lib.store(
        [
            ImageRecord(f"/p/{first + i}.jpg", 1 + len(tag), 0, None, 1, 1, None, v)
            for i, v in enumerate(x)
        ],
        [],
    )


def true_top(lib: Library, q: np.ndarray, k: int) -> list[int]:
    ids, mat = zip(*lib.vectors())
    ids_all, mat_all = np.concatenate(ids), np.concatenate(mat)
    return ids_all[np.argsort(-(mat_all @ q))[:k]].tolist()


@pytest.fixture
def ivf_library(tmp_path: Path) -> Library:
    lib = Library.open(tmp_path / "lib", create=True)
    lib.write_lock().__enter__()
    lib.set_model_spec(SPEC)
    store(lib, 0, clustered(1200, dim=DIM, clusters=40, seed=4))
    lib.ann.save(PARAMS)
    yield lib
    lib.close()


def test_library_updates_its_ivf_file_in_place_without_retraining(ivf_library, monkeypatch):
    lib = ivf_library
    meta = lib.meta()
    assert meta["faiss_kind"] == "ivf" and meta["faiss_trained"] == "1200"
    centroids_before = _centroids(lib)

    changed = clustered(50, dim=DIM, clusters=40, seed=9)
    store(lib, 0, changed, tag="changed")  # same paths (ids kept), new vectors
    store(lib, 5000, clustered(300, dim=DIM, clusters=40, seed=10))  # new rows
    known = lib.known_files()
    gone = [row.id for path, row in known.items() if path.endswith(("/7.jpg", "/8.jpg"))]
    lib.remove(gone)

    monkeypatch.setattr(vectors, "trained_ivf", _fail_if_called)
    lib.ann.save(PARAMS)
    meta = lib.meta()
    assert meta["faiss_trained"] == "1200" and int(meta["faiss_count"]) == 1200 + 300 - 2
    np.testing.assert_array_equal(_centroids(lib), centroids_before)

    fresh = Library.open(lib.path)  # a reader: loads the saved file
    index = fresh.ann.current(PARAMS)
    assert index.kind == "ivf" and index.ntotal == 1498
    assert not set(gone) & set(vectors.ids_of(index).tolist())
    for q in changed[:5]:  # the changed vectors are found with their new values
        scores, ids = index.search(q[None], 5)
        assert ids[0].tolist() == true_top(fresh, q, 5)
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    fresh.close()


def test_library_retrains_when_it_has_more_than_doubled(ivf_library):
    lib = ivf_library
    store(lib, 10_000, clustered(1300, dim=DIM, clusters=40, seed=11))
    lib.ann.save(PARAMS)
    assert lib.meta()["faiss_trained"] == "2500"


def test_reader_derives_a_stale_ivf_file_forward_in_memory(ivf_library):
    lib = ivf_library
    added = clustered(20, dim=DIM, clusters=40, seed=12)
    store(lib, 7000, added)  # not saved: the file is one generation behind
    reader = Library.open(lib.path)
    index = reader.ann.current(PARAMS)
    assert index.ntotal == 1220
    _, ids = index.search(added[:1], 1)
    assert ids[0, 0] == true_top(reader, added[0], 1)[0]
    reader.close()


def test_library_falls_back_to_exact_when_it_shrinks_below_the_switch(ivf_library):
    lib = ivf_library
    lib.remove([row.id for row in lib.known_files().values()][:800])
    lib.ann.save(PARAMS)
    assert lib.meta()["faiss_kind"] == "flat"
    assert lib.ann.current(PARAMS).kind == "flat"


def _centroids(lib: Library) -> np.ndarray:
    import faiss

    index = vectors.read(lib.path / lib.meta()["faiss_file"], mmap=False)
    quantizer = faiss.extract_index_ivf(index).quantizer
    return quantizer.reconstruct_n(0, quantizer.ntotal)  # a copy: `index` is freed on return


def _fail_if_called(*_args: object) -> None:
    raise AssertionError("k-means ran again: the saved IVF index should have been updated")
