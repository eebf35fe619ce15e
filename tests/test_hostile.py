"""Hostile and odd inputs, end to end through `imgsearch index`: nothing crashes or hangs, every
valid image is indexed, every invalid one is reported and stored with a specific reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imgsearch.library import Library
from tests.conftest import make_pictures
from tests.support.corpus import make_hostile_corpus, rewrite

IS_ROOT = os.geteuid() == 0


def stored(library: Path) -> dict[str, str]:
    """path -> status of every row."""
    with Library.open(library) as lib:
        return {p: k.status for p, k in lib.known_files().items()}


@pytest.mark.timeout(240)
def test_hostile_corpus_is_indexed_or_reported(run, tiny_model, tmp_path, isolated_env):
    root = tmp_path / "corpus"
    cases = make_hostile_corpus(root)
    result = run("index", root, "--model", tiny_model)  # exit 0: skipped files are not fatal
    errors = {r["path"]: r["reason"] for r in json.loads(run("errors", "--json").stdout)}
    rows = stored(isolated_env)
    checked = 0
    for case in cases:
        if case.unprivileged and IS_ROOT:
            continue  # root reads chmod-000 files; tests/test_decode.py covers it as 'nobody'
        path = str(root / case.relpath)
        if os.path.exists(path):
            path = os.path.realpath(path)  # a symlink's file is stored as its target
        if not case.walked and case.expect_reason in (None, "not an image"):
            # ignored on purpose (hidden, system folder, not an image extension): never opened
            assert path not in rows, case
        elif case.valid:
            assert rows.get(path) == "ok", (case, errors.get(path))
        elif case.walked:
            assert rows.get(path) == "error", case
            assert case.expect_reason in errors[path], (case, errors[path])
            assert f"skipping {path}: {errors[path]}" in result.stderr
        else:  # refused by the walk (pipe, broken link ...): reported, never opened
            assert case.expect_reason in errors[path], (case, errors)
            assert rows.get(path) == "error"
        checked += 1
    assert checked >= 30
    skipped = sum(1 for s in rows.values() if s == "error")
    assert f"{skipped} skipped" in result.stderr


def test_rerun_over_hostile_corpus_changes_nothing(run, tiny_model, tmp_path, isolated_env):
    root = tmp_path / "corpus"
    make_hostile_corpus(root)
    run("index", root, "--model", tiny_model)
    first = stored(isolated_env)
    again = run("index", root)
    assert "0 added" in again.stderr and "0 removed" in again.stderr
    assert stored(isolated_env) == first


def test_file_deleted_between_walk_and_decode(run, tiny_model, tmp_path, isolated_env, monkeypatch):
    import imgsearch.decode as pipeline  # the inline decode path looks it up at call time

    pictures = make_pictures(tmp_path / "few", 6)  # few files: decoded in-process, patchable
    victim = str(pictures[4])
    real = pipeline.decode

    def vanishing(path, *a, **k):
        if path == victim:
            os.unlink(path)
        return real(path, *a, **k)

    monkeypatch.setattr(pipeline, "decode", vanishing)
    result = run("index", pictures[0].parent, "--model", tiny_model, "--batch-size", "2")
    rows = stored(isolated_env)
    assert victim not in rows and len(rows) == len(pictures) - 1
    assert "5 added" in result.stderr and "0 skipped" in result.stderr


def test_file_rewritten_while_indexed_is_caught_next_run(
    run, tiny_model, tmp_path, isolated_env, monkeypatch
):
    import imgsearch.decode as pipeline  # the inline decode path looks it up at call time
    from imgsearch import Searcher

    pictures = make_pictures(tmp_path / "few", 6)
    victim = pictures[2]
    real = pipeline.decode

    def racing(path, *a, **k):
        out = real(path, *a, **k)
        if path == str(victim):
            rewrite(victim)  # new content lands after the old content was read
        return out

    monkeypatch.setattr(pipeline, "decode", racing)
    run("index", pictures[0].parent, "--model", tiny_model)
    monkeypatch.setattr(pipeline, "decode", real)
    result = run("index", pictures[0].parent)
    assert "1 updated" in result.stderr
    with Searcher() as s:
        fresh = s.embed_image(victim)
        stored_vec = s.library.vector_for_path(str(victim))[1]
    assert float(fresh @ stored_vec) == pytest.approx(1.0, abs=1e-5)
