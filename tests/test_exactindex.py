"""The flat rung read and searched with numpy (imgsearch/exactindex.py): the same answers as
FAISS, a refusal (and FAISS) for any file that is not exactly a flat index, and a cold query
on a small library that never imports FAISS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch import exactindex, vectors
from imgsearch.library import ImageRecord, Library
from imgsearch.modelspec import ModelSpec, PreprocessSpec
from imgsearch.vectors import IndexParams
from tests.test_vectors import clustered, text_like


def saved_flat(tmp_path: Path, x: np.ndarray, ids: np.ndarray) -> Path:
    index = vectors.build([(ids, x)], dim=x.shape[1], params=IndexParams(exact_max=10_000))
    assert index.kind == "flat"
    return tmp_path / vectors.save(tmp_path, index, generation=3)


def test_reads_what_faiss_wrote_ids_in_insertion_order(tmp_path):
    x = clustered(300, dim=64)
    ids = np.random.default_rng(1).permutation(np.arange(5, 905, 3))  # sparse, unsorted
    path = saved_flat(tmp_path, x, ids)
    got_ids, got = exactindex.read_flat(path)
    assert np.array_equal(got_ids, ids) and np.array_equal(got, x)


@pytest.mark.parametrize("allowed", [None, "some", "none"])
@pytest.mark.parametrize("k", [1, 10, 400])  # 400 > n: -1 fillers, as FAISS pads
def test_search_answers_as_faiss_does(tmp_path, allowed, k):
    x = clustered(300, dim=64)
    ids = np.arange(100, 400, dtype=np.int64)
    path = saved_flat(tmp_path, x, ids)
    faiss_index = vectors.VectorIndex(vectors.read(path, mmap=False), "flat", IndexParams())
    matrix = exactindex.MatrixIndex(*exactindex.read_flat(path))
    subset = {None: None, "some": ids[::7], "none": np.empty(0, np.int64)}[allowed]
    q = text_like(x, 5)
    want_s, want_i = faiss_index.search(q, k, subset)
    got_s, got_i = matrix.search(q, k, subset)
    assert got_i.shape == want_i.shape
    assert np.array_equal(got_i, want_i)
    assert np.allclose(got_s[got_i >= 0], want_s[want_i >= 0], atol=1e-5)


def test_refuses_anything_but_an_exact_flat_file(tmp_path):
    x = clustered(200, dim=32)
    path = saved_flat(tmp_path, x, np.arange(200, dtype=np.int64))
    blob = path.read_bytes()
    bad = {
        "truncated": blob[:-8],
        "trailing": blob + b"\0",
        "empty": b"",
        "garbage": b"IxM2" + bytes(200),
        "other fourcc": blob[:37] + b"IxF2" + blob[41:],  # an L2 flat index
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        assert exactindex.read_flat(tmp_path / name) is None, name
    ivf = vectors.build(
        [(np.arange(4000, dtype=np.int64), clustered(4000, dim=32))],
        dim=32,
        params=IndexParams(exact_max=100),
    )
    assert ivf.kind != "flat"
    assert exactindex.read_flat(tmp_path / vectors.save(tmp_path, ivf, generation=9)) is None


def small_library(tmp_path: Path, n: int = 120) -> tuple[Library, np.ndarray]:
    x = clustered(n, dim=32)
    lib = Library.open(tmp_path / "lib", create=True)
    pre = PreprocessSpec((224, 224), (0.5,) * 3, (0.5,) * 3)
    spec = ModelSpec("ViT-B-32", "synthetic", 32, pre)
    with lib.write_lock():
        lib.set_model_spec(spec)
        records = [
            ImageRecord(f"/p/{i}.jpg", 1, i, f"{i:032x}", 10, 10, None, v) for i, v in enumerate(x)
        ]
        lib.store(records, [])
        lib.ann.save(IndexParams())
    lib.close()
    return Library.open(tmp_path / "lib"), x  # a reader: the writer's process caches FAISS


def test_library_queries_use_the_matrix_and_agree_with_brute_force(tmp_path):
    lib, x = small_library(tmp_path)
    with lib:
        index = lib.ann.searchable(IndexParams())
        assert isinstance(index, exactindex.MatrixIndex)
        q = text_like(x, 3)
        _, got = index.search(q, 10)
        ids, mat = lib.vectors_for_ids(np.arange(0, 10_000, dtype=np.int64))
        want = ids[np.argsort(-(q @ mat.T), axis=1, kind="stable")[:, :10]]
        assert np.array_equal(got, want)
        assert lib.ann.current(IndexParams()).kind == "flat"  # FAISS callers still get FAISS


def test_a_file_disagreeing_with_sqlite_is_not_trusted(tmp_path):
    lib, x = small_library(tmp_path)
    with lib:
        path = lib.path / lib.meta()["faiss_file"]
        blob = bytearray(path.read_bytes())
        blob[82:86] = np.float32(9.0).tobytes()  # the first stored vector's first value
        path.write_bytes(bytes(blob))
        with lib.snapshot() as cur:
            assert exactindex.load(lib.path, lib.meta(cur), cur, IndexParams()) is None
        index = lib.ann.searchable(IndexParams())  # derived again from SQLite, through FAISS
        assert not isinstance(index, exactindex.MatrixIndex)
        _, got = index.search(x[:1], 1)
        assert got[0, 0] == lib.vectors_for_ids(np.arange(1000, dtype=np.int64))[0][0]


def test_a_new_generation_is_read_again(tmp_path):
    """A long-lived reader (the server) sees what another process's `index` wrote."""
    lib, x = small_library(tmp_path)
    with lib:
        first = lib.ann.searchable(IndexParams())
        extra = clustered(1, dim=32, seed=9)[0]
        with Library.open(lib.path) as writer, writer.write_lock():
            writer.store([ImageRecord("/p/new.jpg", 1, 1, "f" * 32, 10, 10, None, extra)], [])
            writer.ann.save(IndexParams())
        second = lib.ann.searchable(IndexParams())
        assert isinstance(second, exactindex.MatrixIndex)
        assert second is not first and second.ntotal == first.ntotal + 1
        _, got = second.search(extra[None, :], 1)
        assert got[0, 0] == max(second.ids)


def test_cold_query_on_a_small_library_imports_no_faiss(tmp_path):
    small_library(tmp_path)[0].close()
    code = (
        "import sys, numpy as np\n"
        "from imgsearch.library import Library\n"
        "from imgsearch.vectors import IndexParams\n"
        f"lib = Library.open({str(tmp_path / 'lib')!r})\n"
        "index = lib.ann.searchable(IndexParams())\n"
        "print(type(index).__name__, 'faiss' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["MatrixIndex", "False"], out.stderr
