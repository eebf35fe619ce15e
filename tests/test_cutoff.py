"""imgsearch.cutoff on synthetic score mixtures: where relevance ends, and when nothing is."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch import cutoff
from imgsearch.cutoff import (
    CutoffDecision,
    cluster_cut,
    decide,
    gap_cut,
    null_floor,
    parse_policy,
)
from imgsearch.errors import ImgsearchError

CONSIDERED = 200


def world(
    n_relevant: int, seed: int = 0, *, level: float = 0.8, spread: float = 0.02
) -> tuple[np.ndarray, np.ndarray, float]:
    """(top scores sorted desc, background sample, null floor) of a 5000-photo library where
    `n_relevant` photos score ~`level` and the rest ~N(0.1, 0.05); generic captions score ~0.05,
    so the floor is ~0.6 (the 0.9 quantile ~0.09, plus 0.57 of the room above it)."""
    rng = np.random.default_rng(seed)
    library = np.concatenate([rng.normal(0.1, 0.05, 5000 - n_relevant),
                              rng.normal(level, spread, n_relevant)])  # fmt: skip
    return split(library, rng)


def split(library: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
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


def test_a_broad_relevant_set_is_kept_whole() -> None:
    """ "a circle": 80 circles of every colour spread over 0.45-0.76 with one best at 0.81, over
    partial matches from 0.41 down and unrelated photos at ~0.1. The sparse top has the widest
    raw gap (0.05 after the best one, more than the 0.04 drop after the last circle), where the
    old widest-gap rule cut; per unit of the run's spacing the drop after the circles wins."""
    rng = np.random.default_rng(11)
    circles = np.concatenate([[0.81], np.linspace(0.76, 0.45, 79)])
    partial = np.linspace(0.41, 0.30, 20)
    library = np.concatenate([rng.normal(0.1, 0.05, 4900), partial, circles])
    top, background, floor = split(library, rng)
    decision = decide(top, background, "auto", null_floor=floor)
    assert decision.kept == 80 and decision.method == "auto:null+gap"
    assert decision.threshold == pytest.approx(0.45)
    raw = -np.diff(top[:81])
    assert int(np.argmax(raw)) == 0 and raw[0] > raw[-1]  # the old rule's cut: after one


def test_auto_says_nothing_is_relevant_for_an_absent_concept() -> None:
    top, background, floor = world(0)
    decision = decide(top, background, "auto", null_floor=floor)
    assert (decision.kept, decision.method, decision.threshold) == (0, "auto:null", floor)
    assert decision.describe() == f"kept 0 of {CONSIDERED} (auto cutoff at {floor:.2f})"


def test_partial_matches_below_the_floor_return_nothing() -> None:
    """An absent "a purple circle": circles of other colours match partly, a clear cluster at
    ~0.45, which the cut finds but which lies under the floor."""
    top, background, floor = world(60, seed=5, level=0.45)
    assert cluster_cut(top, float(np.median(background)), cutoff.MIN_GAP, 0.1) == 60
    decision = decide(top, background, "auto", null_floor=floor)
    assert (decision.kept, decision.method) == (0, "auto:null")


def test_presence_reads_the_best_few_kept_not_one_stray_score() -> None:
    """One stray photo above the floor does not make a cluster below it relevant: the mean of
    the best PRESENCE_TOP kept scores is judged."""
    floor = 0.6
    cluster = np.linspace(0.52, 0.48, 30)
    rest = np.linspace(0.2, 0.0, 170)
    background = np.linspace(0.0, 0.2, 500)
    top = np.concatenate([[0.66], cluster, rest])
    assert cluster_cut(top, float(np.median(background)), cutoff.MIN_GAP, 0.1) == 31
    assert decide(top, background, "auto", null_floor=floor).kept == 0
    single = np.concatenate([[0.66], rest[:199]])  # alone it is the cluster, and it clears it
    assert decide(single, background, "auto", null_floor=floor).kept == 1


def test_without_a_null_floor_auto_only_places_the_cut() -> None:
    top, background, _ = world(7)
    assert decide(top, background, "auto").kept == 7
    absent = decide(*world(0)[:2], "auto")
    assert absent.method == "auto:gap" and absent.kept > 0  # it cannot say "nothing"


def test_null_floor_is_a_fraction_of_the_room_above_the_null_level() -> None:
    scores = np.linspace(0.0, 1.0, 1001)
    assert null_floor(scores, quantile=0.5, fraction=0.5) == pytest.approx(0.75)
    assert null_floor(scores) == pytest.approx(0.9 + cutoff.PRESENCE_FRACTION * 0.1)
    assert null_floor(scores - 0.5, quantile=0.5, fraction=0.0) == pytest.approx(0.0)
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


def test_cluster_cut_weighs_each_gap_against_the_spacing_above_it() -> None:
    # a sparse best pair (0.1 apart), a dense run of 20 ending in a 0.04 drop, then a dense tail
    top = np.concatenate([[0.95, 0.85], np.linspace(0.80, 0.76, 20), np.linspace(0.72, 0.60, 61)])
    assert gap_cut(top, 0.55, 0.02) == 0.95  # the widest raw gap: after the best one
    # per unit of spacing: 0.1 * 1 / 0.04 = 2.5 after the best; 0.04 * 22 / 0.23 = 3.8 after 0.76
    assert cluster_cut(top, 0.55, 0.02, 0.1) == 22
    assert cluster_cut(top, 0.55, 0.2, 0.1) == top.size  # no gap wide enough: all above 0.55
    assert cluster_cut(top, 0.96, 0.02, 0.1) == 0  # nothing reaches the floor
    # every score above the floor: the list is a head, its last gap is unknown and not used
    assert cluster_cut(np.array([0.9, 0.85, 0.84]), 0.1, 0.02, 0.1) == 1  # not 0.84 -> 0.1


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
