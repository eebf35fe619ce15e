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
    assert info["embedded_at"] == ["fp32"]  # the CPU's onnxruntime, fp32 by default
    text = run("stats").stdout
    assert f"{len(pictures)} indexed" in text and tiny_model in text
    assert "embedded  at fp32" in text.splitlines()


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


def test_a_library_records_the_precisions_that_embedded_it(run, tiny_model, pictures, tmp_path):
    """Lossy opt-ins (int8, bf16) mixed with other precisions get a notice; CUDA's fp16 beside
    the CPU's fp32 does not (by design); vectors stored before the record are "unrecorded"."""
    import sqlite3

    from imgsearch.library import Library

    lib = Library.open(tmp_path / "lib", create=True)
    assert lib.embedded_at() == [] and lib.note_precision("fp32") is None
    assert lib.note_precision("fp16") is None and lib.note_precision("fp32") is None
    notice = lib.note_precision("int8")
    assert notice and "embedded at fp32, fp16; this run embeds at int8" in notice
    assert "--library NEW_FOLDER" in notice and str(lib.path) in notice
    assert lib.note_precision("int8") is None
    assert Library.open(tmp_path / "lib").embedded_at() == ["fp32", "fp16", "int8"]

    other = Library.open(tmp_path / "bf16", create=True)
    assert other.note_precision("bf16") is None  # the first run: nothing to mix with
    assert "at bf16; this run embeds at fp32" in (other.note_precision("fp32") or "")

    run("index", pictures[0].parent, "--model", tiny_model, "--library", tmp_path / "old")
    with sqlite3.connect(tmp_path / "old" / "library.db") as con:  # as an older imgsearch left it
        con.execute("DELETE FROM meta WHERE key = 'embedded_at'")
    old = Library.open(tmp_path / "old")
    assert old.embedded_at() == ["unrecorded"]
    assert "at an unrecorded precision; this run embeds at bf16" in (
        old.note_precision("bf16") or ""
    )
