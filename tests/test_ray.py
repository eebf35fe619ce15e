"""`imgsearch index --engine ray`: the same library as a local run, incremental runs, a killed
worker retried without duplicates, and a clear error without Ray installed.

The Ray tests share one local Ray (`ray.init(num_cpus=2)`) per module and skip when Ray is not
installed (pip install -e ".[ray]"); they are marked `ray` (`-m ray` runs only them).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgsearch.cli import cli
from tests.conftest import make_pictures
from tests.support.harness import SUMMARY_RE

# columns that differ between any two runs (ids, stamps, generation counters)
RUN_COLUMNS = {"id", "indexed_at", "vector_gen", "vector"}


def library_state(library: Path) -> dict[str, dict]:
    """Every stored row by path, read with plain sqlite3: what a user of the library sees."""
    with sqlite3.connect(library / "library.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT images.*, vectors.vector FROM images LEFT JOIN vectors USING (id)"
        ).fetchall()
    out = {}
    for row in rows:
        data = dict(row)
        blob = data["vector"]
        data = {k: v for k, v in data.items() if k not in RUN_COLUMNS}
        data["vector"] = None if blob is None else np.frombuffer(blob, np.float32)
        out[os.fsdecode(data["path"])] = data
    return out


def assert_same_state(ray_lib: Path, local_lib: Path) -> None:
    ray_rows, local_rows = library_state(ray_lib), library_state(local_lib)
    assert sorted(ray_rows) == sorted(local_rows)
    for path, want in local_rows.items():
        got = ray_rows[path]
        want_vec, got_vec = want.pop("vector"), got.pop("vector")
        assert got == want, path
        if want_vec is None:
            assert got_vec is None, path
        else:
            np.testing.assert_allclose(got_vec, want_vec, rtol=0, atol=1e-6, err_msg=path)


def summary(result) -> str:
    """The run's counts ("15 added, 0 updated, ..."), without its timing."""
    found = SUMMARY_RE.search(result.stderr)
    assert found, result.stderr
    return found.group(0)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory, session_cache):
    """One local Ray for the module; its workers see this session's caches and this code."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    home = tmp_path_factory.mktemp("ray-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(session_cache))
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        mp.setenv("XDG_CONFIG_HOME", str(home / "config"))
        root = str(Path(__file__).resolve().parents[1])
        mp.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def photo_folder(tmp_path: Path) -> Path:
    """Pictures, a byte-identical copy (shares a vector), and a file that is no image."""
    folder = tmp_path / "photos"
    pics = make_pictures(folder, 14)
    shutil.copy2(pics[0], folder / "copy_of_0.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


@pytest.mark.ray
def test_ray_index_stores_what_a_local_index_stores(
    run, tiny_model, tmp_path, ray_cluster, monkeypatch
):
    from imgsearch.library import Library

    folder = photo_folder(tmp_path)
    monkeypatch.setenv("IMGSEARCH_VECTOR_PRECISION", "float16")  # a new library's, on both
    local = run("index", folder, "--model", tiny_model, "--library", tmp_path / "local")
    ray_run = run("index", folder, "--model", tiny_model, "--library", tmp_path / "ray",
                  "--engine", "ray", "--actors", "3")  # 3 actors share the 2 CPUs  # fmt: skip
    assert summary(ray_run) == summary(local)
    assert summary(ray_run) == "15 added, 0 updated, 0 moved, 0 removed, 1 skipped, 0 unchanged"
    assert "skipping" in ray_run.stderr and "broken.jpg" in ray_run.stderr
    assert_same_state(tmp_path / "ray", tmp_path / "local")
    for name in ("ray", "local"):
        meta = Library.open(tmp_path / name).meta()
        assert meta["vector_format"] == "float16" and meta["embedded_at"] == "fp32", name
    state = library_state(tmp_path / "ray")
    same = state[str(folder / "copy_of_0.png")]["content_hash"]
    assert same is not None and same == state[str(folder / "pic_000.png")]["content_hash"]
    assert not (tmp_path / "ray" / "ray-shards").exists()  # imported shards are cleaned up
    found = run("query", "--image", folder / "pic_003.png", "--json", "-k", "1", "--library",
                tmp_path / "ray")  # fmt: skip
    assert '"path": "' + str(folder / "pic_003.png") in found.stdout


@pytest.mark.ray
def test_incremental_ray_run_after_move_delete_change_and_new_matches_local(
    run, tiny_model, tmp_path, ray_cluster
):
    folder = photo_folder(tmp_path)
    libs = {"local": tmp_path / "local", "ray": tmp_path / "ray"}

    def index_both() -> dict[str, str]:
        out = {}
        for name, lib in libs.items():
            extra = ["--engine", "ray"] if name == "ray" else []
            out[name] = summary(run("index", folder, "--model", tiny_model, "--library", lib,
                                    *extra))  # fmt: skip
        return out

    index_both()
    (folder / "sub").mkdir()
    os.replace(folder / "pic_001.png", folder / "sub" / "moved.png")
    (folder / "pic_002.png").unlink()
    shutil.copy2(folder / "pic_004.png", folder / "pic_005.png")  # changed content
    make_pictures(tmp_path / "new", 2, seed=7)
    for pic in (tmp_path / "new").iterdir():
        shutil.move(pic, folder / f"new_{pic.name}")
    second = index_both()
    assert second["ray"] == second["local"]
    assert second["ray"].startswith("2 added, 1 updated, 1 moved, 1 removed")
    assert_same_state(libs["ray"], libs["local"])
    third = index_both()  # nothing changed: nothing goes to Ray
    assert third["ray"] == third["local"]
    assert "0 added, 0 updated, 0 moved, 0 removed" in third["ray"]


@pytest.mark.ray
def test_a_killed_actor_is_retried_with_no_duplicates_and_nothing_missing(
    run, tiny_model, tmp_path, ray_cluster
):
    import psutil

    from imgsearch import config, runtime
    from imgsearch.library import Library
    from indexer import pipeline, rayengine

    folder = tmp_path / "photos"
    make_pictures(folder, 24)
    run("index", folder, "--model", tiny_model, "--library", tmp_path / "local")
    marker = tmp_path / "killed.pid"
    settings = config.resolve(overrides={"library": str(tmp_path / "ray"), "model": tiny_model})
    options = rayengine.RayOptions(actors=2, shard_size=4, crash_once=str(marker))
    progress: list = []
    with Library.open(settings.library_path, create=True) as lib, lib.write_lock():
        result = pipeline.run(
            lib, [str(folder)], settings,
            load_encoder=lambda: runtime.load_image_encoder(tiny_model, "", settings),
            on_progress=progress.append, embed_all=rayengine.embedder(options),
        )  # fmt: skip
    pid = int(marker.read_text())  # the actor that wrote its first shard, then was killed
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert (result.added, result.updated, len(result.skipped)) == (24, 0, 0)
    assert progress[-1].done == 24 and len(progress) == 6  # six shards, each imported once
    assert_same_state(tmp_path / "ray", tmp_path / "local")


def test_unreachable_cluster_is_a_clear_error_not_a_hang(run, tiny_model, pictures):
    pytest.importorskip("ray")
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("index", pictures[0].parent, "--model", tiny_model, "--engine", "ray",
                 "--address", f"127.0.0.1:{port}", code=1)  # fmt: skip
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.stderr
    result = run("index", pictures[0].parent, "--engine", "ray", "--address", "nonsense", code=1)
    assert "expected HOST:PORT" in result.stderr
    assert not Path(os.environ["IMGSEARCH_LIBRARY"]).exists()  # refused before anything


def test_without_ray_installed_the_error_says_how_to_install_it(
    run, tiny_model, pictures, monkeypatch, isolated_env
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = run("index", pictures[0].parent, "--model", tiny_model, "--engine", "ray", code=1)
    assert 'pip install "imgsearch[ray]"' in result.stderr
    assert not isolated_env.exists()  # refused before a library was made


def test_address_without_the_ray_engine_is_a_usage_error(run, pictures):
    result = run("index", pictures[0].parent, "--address", "10.0.0.1:6379", code=2)
    assert "--engine ray" in result.stderr


def test_actor_pool_follows_the_cluster_gpus_else_its_cpus():
    from indexer.rayengine import RayOptions, pool_shape

    assert pool_shape({"CPU": 16.0, "GPU": 2.0}, RayOptions()) == (2, 1.0, 1.0)
    assert pool_shape({"CPU": 16.0, "GPU": 1.0}, RayOptions(actors=4)) == (4, 0.25, 1.0)
    assert pool_shape({"CPU": 8.0}, RayOptions()) == (8, 0.0, 1.0)
    assert pool_shape({"CPU": 8.0}, RayOptions(cpus_per_actor=2)) == (4, 0.0, 2.0)
    assert pool_shape({"CPU": 2.0}, RayOptions(actors=4)) == (4, 0.0, 0.5)  # all four start


@pytest.mark.ray
def test_a_failing_unit_stops_the_run_with_a_message_and_keeps_what_was_stored(
    run, tiny_model, pictures, tmp_path, ray_cluster
):
    from imgsearch import config, runtime
    from imgsearch.errors import ImgsearchError
    from imgsearch.library import Library
    from indexer import pipeline, rayengine

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the actors cannot write shards under a file")
    settings = config.resolve(overrides={"library": str(tmp_path / "ray"), "model": tiny_model})
    options = rayengine.RayOptions(actors=1, shard_size=4, shard_dir=blocker / "shards")
    with Library.open(settings.library_path, create=True) as lib, lib.write_lock():
        failed = r"the Ray job failed \((NotADirectoryError|FileExistsError): "
        with pytest.raises(ImgsearchError, match=failed) as err:
            pipeline.run(
                lib, [str(pictures[0].parent)], settings,
                load_encoder=lambda: runtime.load_image_encoder(tiny_model, "", settings),
                embed_all=rayengine.embedder(options),
            )  # fmt: skip
        assert "next `imgsearch index --engine ray`" in str(err.value)
        assert lib.count() == 0


@pytest.mark.ray
def test_an_interrupted_run_resumes_from_its_shards_without_embedding_them_again(
    run, tiny_model, tmp_path, ray_cluster, monkeypatch
):
    from indexer import rayengine, shardimport

    folder = tmp_path / "photos"
    make_pictures(folder, 12)
    run("index", folder, "--model", tiny_model, "--library", tmp_path / "local")
    original_add = shardimport.ShardWriter.add
    imported = []

    shard_dir = tmp_path / "ray" / "ray-shards"

    def add_then_interrupt(self, rows):
        original_add(self, rows)
        imported.append(len(rows))
        deadline = time.monotonic() + 60
        while len(list(shard_dir.glob("*.parquet"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # the actors finish the other two units
        raise KeyboardInterrupt  # then Ctrl-C, with the first of the three shards stored

    monkeypatch.setattr(shardimport.ShardWriter, "add", add_then_interrupt)
    monkeypatch.setattr(rayengine.RayOptions, "__init__", _small_units(rayengine.RayOptions))
    lib = tmp_path / "ray"
    args = ["index", folder, "--model", tiny_model, "--library", lib, "--engine", "ray"]
    stopped = CliRunner().invoke(cli, [str(a) for a in args])
    assert stopped.exit_code == 130, stopped.output
    assert imported == [4] and len(list(shard_dir.glob("*.parquet"))) == 3
    monkeypatch.setattr(shardimport.ShardWriter, "add", original_add)
    sent: list[int] = []
    original_run = rayengine._run

    def counting_run(ray, units, *args):
        sent.append(len(units))
        yield from original_run(ray, units, *args)

    monkeypatch.setattr(rayengine, "_run", counting_run)
    second = run(*args)
    assert summary(second).startswith("8 added")  # 4 were stored before the Ctrl-C
    assert sent == []  # the other 8 came from the shards the actors had finished
    assert_same_state(tmp_path / "ray", tmp_path / "local")
    assert not (tmp_path / "ray" / "ray-shards").exists()


def _small_units(cls):
    """RayOptions with 4 files per unit (the CLI makes them with the default 256)."""
    original = cls.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("shard_size", 4)
        original(self, *args, **kwargs)

    return init
