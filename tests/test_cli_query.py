"""`imgsearch query`: output formats, limits, filters, combined queries, errors."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch import Searcher
from imgsearch.query import Term, parse
from tests.conftest import hits, make_pictures


@pytest.fixture
def indexed(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    return pictures


def test_json_is_sorted_cosine_with_absolute_paths(run, indexed):
    found = hits(run("query", "a red square", "--json", "-k", "5"))
    assert len(found) == 5
    scores = [h["score"] for h in found]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert all(h["path"].startswith("/") for h in found)
    assert {h["path"] for h in found} <= {str(p) for p in indexed}


def test_scores_are_cosine_similarities(run, indexed):
    with Searcher() as s:
        q = s.embed_text("a red square")
        found = s.query("a red square", k=3)
        for h in found:
            stored = s.library.vector_for_path(h.path)[1]
            assert h.score == pytest.approx(float(q @ stored), abs=1e-5)


def test_paths_output_is_one_path_per_line(run, indexed):
    out = run("query", "anything", "--paths", "-k", "4").stdout
    lines = out.splitlines()
    assert len(lines) == 4 and all(line.startswith("/") for line in lines)


def test_table_output_has_rank_score_path(run, indexed):
    lines = run("query", "anything", "-k", "2").stdout.splitlines()
    assert lines[0].split() == ["#", "score", "path"]
    rank, score, path = lines[1].split(maxsplit=2)
    assert rank == "1" and float(score) <= 1 and path.startswith("/")


def test_min_score_drops_weaker_hits(run, indexed):
    everything = hits(run("query", "x", "--json", "-k", "12"))
    cut = everything[5]["score"]
    kept = hits(run("query", "x", "--json", "-k", "12", "--min-score", str(cut)))
    assert [h["path"] for h in kept] == [h["path"] for h in everything if h["score"] >= cut]


def test_in_restricts_to_a_folder(run, tiny_model, tmp_path):
    make_pictures(tmp_path / "photos" / "a", 4, seed=1)
    b = make_pictures(tmp_path / "photos" / "b", 4, seed=2)
    run("index", tmp_path / "photos", "--model", tiny_model)
    found = hits(run("query", "x", "--json", "-k", "10", "--in", tmp_path / "photos" / "b"))
    assert {h["path"] for h in found} == {str(p) for p in b}
    # a sibling folder whose name starts the same is not inside
    assert hits(run("query", "x", "--json", "--in", tmp_path / "photos" / "")) != []
    (tmp_path / "phot").mkdir()  # a real folder whose path is a prefix of the indexed one
    assert hits(run("query", "x", "--json", "--in", tmp_path / "phot")) == []


def test_combined_query_is_the_normalised_weighted_sum(run, indexed):
    with Searcher() as s:
        dog, beach, people = (s.embed_text(t) for t in ("dog", "beach", "people"))
        img = s.embed_image(indexed[0])
    want = dog + 0.5 * beach - people + img
    want /= np.linalg.norm(want)
    with Searcher() as s:
        stored = {p: s.library.vector_for_path(str(p))[1] for p in indexed}
    expected = sorted(indexed, key=lambda p: -float(stored[p] @ want))[:3]
    found = hits(
        run(
            "query",
            "dog",
            "+",
            "0.5*beach",
            "-",
            "people",
            "+",
            f"@{indexed[0]}",
            "--json",
            "-k",
            "3",
        )
    )
    assert [h["path"] for h in found] == [str(p) for p in expected]
    assert found[0]["score"] == pytest.approx(float(stored[expected[0]] @ want), abs=1e-5)


def test_minus_option_equals_minus_operator(run, indexed):
    a = hits(run("query", "dog", "--minus", "people", "--json"))
    b = hits(run("query", "dog", "-", "people", "--json"))
    assert a == b


def test_templates_change_the_text_embedding(run, indexed):
    with Searcher() as s:
        none = s.embed_text("a dog", "none")
        photo = s.embed_text("a dog", "photo")
        ensemble = s.embed_text("a dog", "ensemble")
    assert float(none @ photo) < 0.99999 and float(photo @ ensemble) < 0.99999
    direct = s.encoder.embed_texts(["a photo of a dog."])[0]
    assert float(direct @ photo) == pytest.approx(1.0, abs=1e-3)


def test_parse_terms():
    assert parse(["a", "dog", "+", "beach"]).terms == (
        Term("text", "a dog", 1.0),
        Term("text", "beach", 1.0),
    )
    assert parse(["2*cat", "-", "@x.jpg"]).terms == (
        Term("text", "cat", 2.0),
        Term("image", "x.jpg", -1.0),
    )
    assert parse(["-", "blurry"]).terms == (Term("text", "blurry", -1.0),)


def test_empty_query_is_a_usage_error(run, indexed):
    result = run("query", code=2)
    assert "--image" in result.stderr


def test_query_without_library_says_how_to_make_one(run):
    result = run("query", "dog", code=1)
    assert "no library at" in result.stderr and "imgsearch index" in result.stderr


def test_query_image_that_does_not_exist(run, indexed, tmp_path):
    result = run("query", "--image", tmp_path / "missing.jpg", code=1)
    assert "missing.jpg" in result.stderr


def test_query_image_that_is_not_an_image(run, indexed, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    result = run("query", "--image", bad, code=1)
    assert "notes.jpg" in result.stderr and "cannot use" in result.stderr


# ---- rough edges (issue 8) --------------------------------------------------------------------
def test_in_a_missing_folder_is_an_error_naming_it(run, indexed, tmp_path):
    result = run("query", "x", "--in", tmp_path / "no-such-folder", code=2)
    assert "no-such-folder" in result.stderr and "does not exist" in result.stderr
    assert result.stdout == ""


def test_no_results_is_said_on_stderr(run, indexed, tmp_path):
    result = run("query", "x", "--min-score", "1.5")
    assert result.stdout == ""
    assert result.stderr.startswith("no results") and "--min-score" in result.stderr
    result = run("query", "x", "--min-score", "1.5", "--json")
    assert result.stdout.strip() == "[]" and "no results" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run("query", "x", "--in", tmp_path / "empty", "--paths")
    assert result.stdout == "" and str(tmp_path / "empty") in result.stderr
    assert "no results" not in run("query", "x").stderr


def test_missing_query_image_says_no_such_file(run, indexed, tmp_path):
    for args in (["--image", tmp_path / "missing.png"], [f"@{tmp_path / 'missing.png'}"]):
        result = run("query", *args, code=1)
        assert "missing.png" in result.stderr and "no such file" in result.stderr
        assert "disappeared" not in result.stderr


@pytest.mark.parametrize("words", [[""], ["   "], ["+"], ["-"], ["dog", "+", ""], []])
def test_empty_queries_are_the_same_usage_error(run, indexed, words):
    result = run("query", *words, code=2)
    assert "give a text to search for" in result.stderr or "empty query part" in result.stderr


def test_searcher_refuses_an_empty_text_like_the_cli(run, indexed):
    from imgsearch.errors import ImgsearchError

    with Searcher() as s:
        for text in ("", "   ", ["dog", ""]):
            with pytest.raises(ImgsearchError, match="empty query text"):
                s.query(text=text)
        with pytest.raises(ImgsearchError, match="empty query text"):
            s.query(text="dog", negative="")


def test_json_and_paths_cannot_be_combined(run, indexed):
    for args in (["--json", "--paths"], ["--paths", "--json"]):
        result = run("query", "x", *args, code=2)
        assert "--json" in result.stderr and "--paths" in result.stderr
        assert "cannot be used together" in result.stderr
    assert hits(run("query", "x", "--json", "--json"))  # the same one twice is fine


LONG = " ".join(["a very long description of a red square on a sunny afternoon"] * 10)


@pytest.mark.parametrize("mode", ["photo", "ensemble"])
def test_a_query_longer_than_the_context_warns_once(run, indexed, mode):
    result = run("query", LONG, "--templates", mode)
    assert result.stderr.count("tokens long") == 1, result.stderr
    assert "reads only the first 77" in result.stderr
    assert "tokens long" not in run("query", "a red square", "--templates", mode).stderr
    two = run("query", LONG, "+", "green " + LONG, "--templates", mode).stderr
    assert two.count("reads only the first") == 1 and two.count("tokens long") == 2, two


def test_the_torch_text_path_warns_too(run, indexed, caplog):
    with Searcher() as s:
        s.embed_image(indexed[0])  # loads the torch model: texts then go through it
        s.query(text=LONG)
    warned = [r for r in caplog.records if "tokens long" in r.getMessage()]
    assert len(warned) == 1
