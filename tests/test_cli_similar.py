"""`imgsearch similar`: query by example, indexed or not."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import hits


@pytest.fixture
def indexed(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    return pictures


def test_similar_leaves_the_file_itself_out(run, indexed):
    found = hits(run("similar", indexed[3], "--json", "-k", "20"))
    paths = [h["path"] for h in found]
    assert str(indexed[3]) not in paths and len(paths) == len(indexed) - 1
    assert [h["score"] for h in found] == sorted((h["score"] for h in found), reverse=True)


def test_similar_of_an_unindexed_copy_finds_the_original(run, indexed, tmp_path):
    outside = tmp_path / "elsewhere" / "copy.png"
    outside.parent.mkdir()
    shutil.copyfile(indexed[5], outside)
    top = hits(run("similar", outside, "--json"))[0]
    assert top["path"] == str(indexed[5]) and top["score"] == pytest.approx(1.0, abs=1e-4)


def test_similar_missing_file(run, indexed, tmp_path):
    result = run("similar", tmp_path / "nope.jpg", code=1)
    assert "nope.jpg" in result.stderr and "no such file" in result.stderr


def test_similar_json_and_paths_cannot_be_combined(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    result = run("similar", pictures[0], "--paths", "--json", code=2)
    assert "cannot be used together" in result.stderr


def test_interrupted_similar_says_only_interrupted(run, tiny_model, pictures, monkeypatch):
    run("index", pictures[0].parent, "--model", tiny_model)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("imgsearch.search.Searcher.similar_to", interrupted)
    result = run("similar", pictures[0], code=130)
    assert result.stderr == "interrupted\n"
