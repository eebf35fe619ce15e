"""imgsearch.cutoff on synthetic score mixtures: where relevance ends, and when nothing is."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch import cutoff
from imgsearch.cutoff import CutoffDecision, decide, gap_cut, null_floor, parse_policy
from imgsearch.errors import ImgsearchError

CONSIDERED = 200


def world(n_relevant: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(top scores sorted desc, background sample, null floor) of a 5000-photo library where
    `n_relevant` photos score ~0.6 and the rest ~N(0.1, 0.05); generic captions score ~0.05."""
    rng = np.random.default_rng(seed)
    library = np.concatenate([rng.normal(0.1, 0.05, 5000 - n_relevant),
                              rng.normal(0.6, 0.02, n_relevant)])  # fmt: skip
    top = np.sort(library)[::-1][:CONSIDERED]
    background = rng.choice(library, 1000, replace=False)
    return top, background, null_floor(rng.normal(0.05, 0.03, 1000))


@pytest.mark.parametrize("n_relevant", [1, 4, 25, 120])
def test_auto_keeps_exactly_the_relevant_photos(n_relevant: int) -> None:
    top, background, floor = world(n_relevant, seed=n_relevant)
    decision = decide(top, background, "auto", null_floor=floor)
    assert decision.kept == n_relevant
    assert decision.considered == CONSIDERED and decision.method == "auto:null+gap"
    assert top[n_relevant] < decision.threshold <= top[n_relevant - 1]


def test_auto_says_nothing_is_relevant_for_an_absent_concept() -> None:
    top, background, floor = world(0)
    decision = decide(top, background, "auto", null_floor=floor)
    assert (decision.kept, decision.method, decision.threshold) == (0, "auto:null", floor)
    assert decision.describe() == f"kept 0 of {CONSIDERED} (auto cutoff at {floor:.2f})"


def test_without_a_null_floor_auto_only_places_the_cut() -> None:
    top, background, _ = world(7)
    assert decide(top, background, "auto").kept == 7
    absent = decide(*world(0)[:2], "auto")
    assert absent.method == "auto:gap" and absent.kept > 0  # it cannot say "nothing"


def test_null_floor_is_the_quantile_plus_margin() -> None:
    scores = np.linspace(0.0, 1.0, 1001)
    assert null_floor(scores, quantile=0.9, margin=0.1) == pytest.approx(1.0)
    assert null_floor(scores) == pytest.approx(0.9 + cutoff.NULL_MARGIN)
    with pytest.raises(ValueError):
        null_floor(np.array([np.nan]))


def test_policy_none_and_score() -> None:
    top = np.array([0.9, 0.5, 0.31, 0.3, 0.1])
    assert decide(top, np.array([]), "none") == CutoffDecision(5, 5, None, "none")
    kept = decide(top, np.array([]), 0.3)
    assert (kept.kept, kept.threshold, kept.method) == (4, 0.3, "score")  # >= threshold stays
    assert kept.describe() == "kept 4 of 5 (score cutoff at 0.30)"
    assert decide(top, np.array([]), "0.95").kept == 0
    assert decide(top, np.array([]), "none").describe() == "kept 5 of 5 (no cutoff)"


def test_auto_without_enough_background_cuts_nothing() -> None:
    decision = decide(np.array([0.9, 0.2]), np.array([0.1] * 5), "auto", null_floor=0.0)
    assert decision == CutoffDecision(2, 2, None, "auto:no-background")


def test_unsorted_scores_are_a_bug_not_data() -> None:
    with pytest.raises(ValueError, match="sorted descending"):
        decide(np.array([0.1, 0.9]), np.zeros(100), "auto")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), (" None ", "none"), ("0.25", 0.25), (-0.5, -0.5), (1, 1.0)],
)
def test_parse_policy(value: object, expected: object) -> None:
    assert parse_policy(value) == expected


@pytest.mark.parametrize("value", ["banana", "1.5", float("nan"), True, None, [0.2]])
def test_bad_policies_name_the_setting_and_the_choices(value: object) -> None:
    with pytest.raises(ImgsearchError, match="^cutoff: ") as err:
        parse_policy(value)
    assert "auto" in str(err.value) or "-1..1" in str(err.value)


def test_gap_cut_takes_the_widest_gap_above_the_floor() -> None:
    top = np.array([0.9, 0.88, 0.87, 0.5, 0.49, 0.2])
    assert gap_cut(top, 0.3, 0.02) == 0.87  # 0.37 beats the 0.29 below 0.49
    assert gap_cut(top, 0.3, 0.5) == 0.49  # no gap wide enough: all above the floor
    assert gap_cut(top, 0.95, 0.02) is None
    assert gap_cut(np.array([0.9, 0.89]), 0.5, 0.02) == 0.89  # the gap down to the floor counts


def test_tail_threshold_passes_about_the_expected_number_by_chance() -> None:
    rng = np.random.default_rng(3)
    library = rng.exponential(0.05, 200_000) - 0.2  # an exponential tail, shifted
    sample = rng.choice(library, 5000, replace=False)
    threshold = cutoff.tail_threshold(sample, expected_false=5, library_size=library.size)
    assert 1 <= int((library > threshold).sum()) <= 15  # 5 expected


def test_zscore_threshold_is_robust_to_a_relevant_minority() -> None:
    rng = np.random.default_rng(4)
    background = np.concatenate([rng.normal(0.0, 1.0, 9000), rng.normal(8.0, 0.1, 1000)])
    threshold = cutoff.zscore_threshold(background, 3.0)
    assert 3.0 <= threshold <= 3.8  # 10% relevant moves it a little (the clean value is 3.0)
    assert threshold < background.mean() + 3.0 * background.std() - 4.0  # mean/std: ~8.3
