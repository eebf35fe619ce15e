"""The Python API: `from imgsearch import Searcher`, sharing the CLI's query path."""

from __future__ import annotations

import pytest

from imgsearch import Hit, ImgsearchError, Searcher
from tests.conftest import hits


@pytest.fixture
def indexed(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    return pictures


def test_searcher_query_and_similar_return_typed_hits(indexed):
    with Searcher() as s:
        found = s.query(text="a cat", k=4)
        assert len(found) == 4 and all(isinstance(h, Hit) for h in found)
        assert isinstance(found[0].path, str) and isinstance(found[0].score, float)
        like = s.similar(indexed[0], k=3)
        assert str(indexed[0]) not in [h.path for h in like]
        me = s.query(image=indexed[2], k=1)[0]
        assert me.path == str(indexed[2]) and me.score == pytest.approx(1.0, abs=1e-4)


def test_cli_and_searcher_agree(run, indexed):
    cli_hits = hits(run("query", "a cat", "-", "dog", "--json", "-k", "6"))
    with Searcher() as s:
        api = s.query(text="a cat", negative="dog", k=6)
    assert [h["path"] for h in cli_hits] == [h.path for h in api]
    assert [h["score"] for h in cli_hits] == pytest.approx([h.score for h in api], abs=1e-6)


def test_model_loads_once_per_searcher(indexed):
    with Searcher() as s:
        s.query(image=indexed[0])
        first = s.encoder
        s.query(image=indexed[1])
        s.similar(indexed[3])
        assert s.encoder is first


def test_explicit_library_argument(indexed, isolated_env, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_LIBRARY", str(tmp_path / "elsewhere"))
    with Searcher(isolated_env) as s:
        assert len(s.query("x", k=100)) == len(indexed)
    with pytest.raises(ImgsearchError, match="no library at"):
        Searcher()
