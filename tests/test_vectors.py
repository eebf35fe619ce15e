"""The FAISS side: exact below the switch point, HNSW above it with measured recall, filters."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch import vectors


def clustered(n: int, dim: int = 128, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters, like real embeddings (uniform noise has no neighbours to find)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + 0.6 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def build(x: np.ndarray, exact_max: int, ids: np.ndarray | None = None) -> vectors.VectorIndex:
    ids = np.arange(10, 10 + len(x), dtype=np.int64) if ids is None else ids
    return vectors.build(
        [(ids, x)], dim=x.shape[1], exact_max=exact_max, hnsw_m=32, hnsw_ef_search=128
    )


def test_exact_below_the_switch_point_approximate_above():
    x = clustered(500)
    assert build(x, exact_max=500).kind == "flat"
    assert build(x, exact_max=499).kind == "hnsw"


def test_exact_search_returns_true_neighbours_with_row_ids():
    x = clustered(2000)
    index = build(x, exact_max=10_000)
    scores, ids = index.search(x[:5], 3)
    assert list(ids[:, 0]) == [10, 11, 12, 13, 14]  # each vector finds itself, by row id
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    brute = x @ x[7]
    assert ids[0].tolist() == (np.argsort(-(x @ x[0]))[:3] + 10).tolist()
    assert scores[0, 1] == pytest.approx(float(np.sort(x @ x[0])[-2]), abs=1e-5)
    assert brute.shape == (2000,)


def test_hnsw_recall_at_10_against_exact():
    both = clustered(20_200, seed=1)  # held-out queries from the same distribution
    x, queries = both[:20_000], both[20_000:]
    exact = build(x, exact_max=10**9)
    approx = build(x, exact_max=1000)
    assert approx.kind == "hnsw"
    _, want = exact.search(queries, 10)
    _, got = approx.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got)])
    print(f"HNSW recall@10 on 20k clustered vectors: {recall:.4f}")
    assert recall >= 0.98


@pytest.mark.parametrize("exact_max", [10**9, 100], ids=["flat", "hnsw"])
def test_allowed_ids_restrict_results(exact_max):
    x = clustered(3000, seed=3)
    index = build(x, exact_max=exact_max)
    allowed = np.arange(10, 3010, 7, dtype=np.int64)
    _, ids = index.search(x[:4], 20, allowed)
    found = ids[ids >= 0]
    assert len(found) == 4 * 20 and set(found.tolist()) <= set(allowed.tolist())


def test_empty_index_returns_no_hits():
    index = vectors.build([], dim=16, exact_max=10, hnsw_m=8, hnsw_ef_search=16)
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
