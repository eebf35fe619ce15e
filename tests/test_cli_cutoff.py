"""The relevance cutoff through the CLI on the toy world: `auto` keeps a class's pictures,
returns nothing for a concept the library lacks, and says what it did on stderr."""

from __future__ import annotations

import pytest

from tests.conftest import hits
from tests.support.shapes import write_pictures

PER_CLASS = 4


@pytest.fixture
def no_purple(run, trained_model, tmp_path):
    """Every class but the purple ones (an absent colour), indexed."""
    pictures = write_pictures(tmp_path / "shapes", per_class=PER_CLASS, seed=7)
    for path, color, _ in pictures:
        if color == "purple":
            path.unlink()
    run("index", tmp_path / "shapes", "--model", trained_model)
    return tmp_path / "shapes"


def test_auto_keeps_the_class_and_says_so(run, no_purple):
    result = run("query", "a red circle", "--cutoff", "auto", "-k", "50", "--json")
    found = [h["path"].rsplit("/", 1)[1] for h in hits(result)]
    assert found and all(name.startswith("red_circle") for name in found)
    assert len(found) >= PER_CLASS - 1
    assert "auto cutoff at" in result.stderr and f"kept {len(found)} of " in result.stderr


def test_auto_keeps_shapes_across_colours(run, no_purple):
    """ "a triangle" is relevant to the triangles of all four colours left, whose scores spread
    by colour. auto keeps such a shape across colours and nothing else (the widest-gap rule it
    replaced emptied every shape-only query of this world). The tiny model learns some shape
    words better than others, so two of the four must make it, not a named one."""
    across = []
    for shape in ("circle", "square", "triangle", "star"):
        result = run("query", f"a {shape}", "--cutoff", "auto", "-k", "50", "--json")
        found = [h["path"].rsplit("/", 1)[1] for h in hits(result)]
        assert all(f"_{shape}_" in name for name in found), (shape, found)
        assert f"kept {len(found)} of " in result.stderr
        if len({name.split("_")[0] for name in found}) >= 3:
            across.append(shape)
    assert len(across) >= 2, across


@pytest.mark.parametrize("absent", ["a purple star", "a purple circle", "purple"])
def test_auto_returns_nothing_for_an_absent_concept(run, no_purple, absent):
    result = run("query", absent, "--cutoff", "auto", "--json")
    assert hits(result) == [] and "kept 0 of" in result.stderr
    assert "no results" in result.stderr


def test_none_returns_k_and_a_score_cuts_there(run, no_purple):
    assert len(hits(run("query", "a purple star", "-k", "7", "--json"))) == 7
    result = run("query", "a red circle", "--cutoff", "0.99", "--json")
    assert "score cutoff at 0.99" in result.stderr


def test_the_setting_and_a_bad_value(run, no_purple, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_CUTOFF", "auto")
    assert hits(run("query", "a purple star", "--json")) == []
    result = run("query", "a red circle", "--cutoff", "sometimes", code=1)
    assert "not a cutoff" in result.stderr


def test_the_python_api_exposes_the_decision(no_purple):
    from imgsearch import Searcher
    from imgsearch.query import Query, parse

    with Searcher() as s:
        result = s.search(Query(terms=parse(["a green square"]).terms, cutoff="auto", k=50))
    assert result.cutoff is not None and result.cutoff.method.startswith("auto")
    assert result.cutoff.kept == len(result.hits) and result.cutoff.considered >= len(result.hits)
    assert all("green_square" in h.path for h in result.hits)
