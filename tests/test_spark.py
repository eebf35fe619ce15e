"""`imgsearch index --engine spark` on `local[2]`: the same library as a local run, and a killed
Python worker retried (one local Spark per module; skipped without pyspark or Java)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import make_pictures
from tests.test_ray import assert_same_state, summary


@pytest.fixture(scope="module")
def spark(tmp_path_factory, session_cache):
    pytest.importorskip("pyspark")
    pytest.importorskip("pyarrow")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java (java on PATH or JAVA_HOME)")
    import sys

    from pyspark.sql import SparkSession

    home = tmp_path_factory.mktemp("spark-home")
    with pytest.MonkeyPatch.context() as mp:  # the Python workers inherit this environment
        mp.setenv("XDG_CACHE_HOME", str(session_cache))
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        root = str(Path(__file__).resolve().parents[1])
        mp.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        session = (
            SparkSession.builder.master("local[2,2]")  # 2 threads, a failed task tried twice
            .appName("imgsearch tests")
            .config("spark.pyspark.python", sys.executable)
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.spark
def test_spark_index_stores_what_a_local_index_stores_and_survives_a_killed_worker(
    run, tiny_model, tmp_path, spark
):
    from imgsearch import config, runtime
    from imgsearch.library import Library
    from indexer import pipeline, sparkengine

    folder = tmp_path / "photos"
    make_pictures(folder, 10)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    local = run("index", folder, "--model", tiny_model, "--library", tmp_path / "local")
    via_cli = run("index", folder, "--model", tiny_model, "--library", tmp_path / "cli",
                  "--engine", "spark")  # fmt: skip
    assert summary(via_cli) == summary(local)
    assert_same_state(tmp_path / "cli", tmp_path / "local")

    marker = tmp_path / "killed.pid"
    settings = config.resolve(overrides={"library": str(tmp_path / "api"), "model": tiny_model})
    options = sparkengine.SparkOptions(shard_size=3, crash_once=str(marker))
    with Library.open(settings.library_path, create=True) as lib, lib.write_lock():
        result = pipeline.run(
            lib, [str(folder)], settings,
            load_encoder=lambda: runtime.load_image_encoder(tiny_model, "", settings),
            embed_all=sparkengine.embedder(options),
        )  # fmt: skip
    assert marker.is_file()  # a Python worker was killed after writing a shard; retried
    assert (result.added, len(result.skipped)) == (10, 1)
    assert_same_state(tmp_path / "api", tmp_path / "local")


def test_without_pyspark_the_error_says_how_to_install_it(run, pictures, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyspark", None)
    result = run("index", pictures[0].parent, "--engine", "spark", code=1)
    assert 'pip install "imgsearch[spark]"' in result.stderr


def test_actors_are_a_ray_option(run, pictures):
    result = run("index", pictures[0].parent, "--engine", "spark", "--actors", "2", code=2)
    assert "--actors is for --engine ray" in result.stderr
