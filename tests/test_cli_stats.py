"""`imgsearch stats` and `imgsearch errors`."""

from __future__ import annotations

import json


def test_stats_reports_count_model_size_and_last_run(run, tiny_model, pictures, isolated_env):
    run("index", pictures[0].parent, "--model", tiny_model)
    info = json.loads(run("stats", "--json").stdout)
    assert info["images"] == len(pictures) and info["errors"] == 0
    assert info["model"] == tiny_model and info["dim"] == 32
    assert info["bytes"] > 0 and info["library"] == str(isolated_env)
    assert info["last_run"]["added"] == len(pictures) and info["last_run"]["status"] == "ok"
    text = run("stats").stdout
    assert f"{len(pictures)} indexed" in text and tiny_model in text


def test_errors_lists_broken_files_with_reasons(run, tiny_model, pictures):
    folder = pictures[0].parent
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "junk.png").write_bytes(b"this is not a picture at all" * 10)
    result = run("index", folder, "--model", tiny_model)
    assert "2 skipped" in result.stderr
    assert f"skipping {folder / 'empty.jpg'}:" in result.stderr
    rows = json.loads(run("errors", "--json").stdout)
    assert {r["path"] for r in rows} == {str(folder / "empty.jpg"), str(folder / "junk.png")}
    assert all(r["reason"] for r in rows)
    assert "empty.jpg" in run("errors").stdout
    # fixing a file clears its error on the next run
    (folder / "empty.jpg").unlink()
    run("index", folder)
    assert [r["path"] for r in json.loads(run("errors", "--json").stdout)] == [
        str(folder / "junk.png")
    ]


def test_stats_without_library(run):
    assert "no library at" in run("stats", code=1).stderr


def test_stats_shows_the_library_and_the_model_files_apart(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    info = json.loads(run("stats", "--json").stdout)
    assert info["model_bytes"] > 0 and info["library_bytes"] > 0
    assert info["bytes"] == info["library_bytes"] + info["model_bytes"]
    assert info["model_bytes"] > info["library_bytes"]  # the text encoder dwarfs 12 vectors
    size = next(line for line in run("stats").stdout.splitlines() if line.startswith("size"))
    assert "of model files" in size
