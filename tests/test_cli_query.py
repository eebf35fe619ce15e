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
    (tmp_path / "phot").mkdir()
    assert hits(run("query", "x", "--json", "--in", tmp_path / "phot")) == []
    missing = run("query", "x", "--in", tmp_path / "nope", code=2)
    assert f"in:{tmp_path / 'nope'}: no such folder" in missing.stderr


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
