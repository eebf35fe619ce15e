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
