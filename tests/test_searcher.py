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


def test_a_library_above_the_switch_point_answers_like_exact_search(
    run, tiny_model, tmp_path, monkeypatch
):
    """Same query path with the IVF index (exact_search_max below the library's size): the
    re-ranked results equal exact search's, also with a folder filter and after a re-index."""
    from tests.conftest import make_pictures

    make_pictures(tmp_path / "pics" / "a", 40, seed=1)
    make_pictures(tmp_path / "pics" / "b", 40, seed=2)
    run("index", tmp_path / "pics", "--model", tiny_model)

    def answers() -> list[list[str]]:
        with Searcher() as s:
            return [
                [h.path for h in s.query(text="a red square", k=8)],
                [h.path for h in s.query(text="blue", k=5, folder=tmp_path / "pics" / "b")],
                [h.path for h in s.similar(tmp_path / "pics" / "a" / "pic_003.png", k=6)],
            ]

    exact = answers()
    monkeypatch.setenv("IMGSEARCH_EXACT_SEARCH_MAX", "20")
    out = run("index", tmp_path / "pics")  # nothing changed, but the index must become IVF
    assert "0 added" in out.output
    with Searcher() as s:
        assert s.library.meta()["faiss_kind"] == "ivf"
    assert answers() == exact
    assert all(p.startswith(str(tmp_path / "pics" / "b")) for p in exact[1])

    make_pictures(tmp_path / "pics" / "c", 6, seed=3)  # updated in place: no new k-means
    run("index", tmp_path / "pics")
    with Searcher() as s:
        meta = s.library.meta()
        assert meta["faiss_trained"] == "80" and meta["faiss_count"] == "86"
        assert s.query(image=tmp_path / "pics" / "c" / "pic_002.png", k=1)[0].score > 0.9999
