"""Real semantics, end to end: a tiny CLIP trained by the suite finds coloured shapes by text.

The model and the pictures are generated here (tests/support/tinyclip.py, shapes.py); pictures
are indexed and queried through the CLI exactly as a user would.
"""

from __future__ import annotations

import pytest

from imgsearch import Searcher
from tests.conftest import hits
from tests.support.shapes import CLASSES, caption, write_pictures

PER_CLASS = 4
# Measured on this suite's model (seed 0, 80 pictures): precision@4 = 1.000 for photo, none and
# ensemble (tests/support/TINYCLIP.md has its zero-shot figures). Thresholds keep a margin.
MIN_PRECISION = {"photo": 0.80, "none": 0.80, "ensemble": 0.80}


@pytest.fixture
def shapes_library(run, trained_model, tmp_path):
    pictures = write_pictures(tmp_path / "shapes", per_class=PER_CLASS, seed=123)
    result = run("index", tmp_path / "shapes", "--model", trained_model)
    assert f"{len(pictures)} added" in result.stderr
    return pictures


def precision_at_k(run, pictures, templates: str) -> float:
    """Mean over the 20 classes of the share of the top PER_CLASS hits that show that class."""
    total = 0.0
    for color, shape in CLASSES:
        found = hits(
            run(
                "query",
                caption(color, shape),
                "--templates",
                templates,
                "-k",
                str(PER_CLASS),
                "--json",
            )
        )
        want = {str(p) for p, c, s in pictures if (c, s) == (color, shape)}
        total += sum(h["path"] in want for h in found) / PER_CLASS
    return total / len(CLASSES)


@pytest.mark.parametrize("templates", ["photo", "none", "ensemble"])
def test_text_queries_rank_the_right_shapes_first(run, shapes_library, templates):
    precision = precision_at_k(run, shapes_library, templates)
    print(f"precision@{PER_CLASS} with templates={templates}: {precision:.3f}")
    assert precision >= MIN_PRECISION[templates]


def test_a_blue_square_beats_everything_else(run, shapes_library):
    top = hits(run("query", "a blue square", "-k", "3", "--json"))
    assert all("blue_square" in h["path"] for h in top)


def test_negative_terms_push_results_away(run, shapes_library):
    # "circle" minus "red": the red circles should drop below circles of other colours
    plain = hits(run("query", "a circle", "-k", "8", "--json"))
    minus = hits(run("query", "a circle", "-", "red", "-k", "8", "--json"))
    reds = lambda found: sum("red_" in h["path"] for h in found)  # noqa: E731
    assert reds(minus) < reds(plain) or reds(plain) == 0
    assert reds(minus) <= 1


def test_similar_finds_the_same_class(shapes_library):
    with Searcher() as s:
        agree = 0
        for path, color, shape in shapes_library[::PER_CLASS]:
            top = s.similar(path, k=1)[0]
            agree += f"{color}_{shape}_" in top.path
    assert agree / len(CLASSES) >= 0.8
