"""Sorted top scores of one query + a random sample of the library's scores -> how many are
relevant (CutoffDecision): the `--cutoff auto|none|SCORE` policy.

A flat threshold fails because where relevance ends "varies significantly by query and model"
(immich #5996). `auto` decides per query from that query's own scores: the cut falls where the
sorted top scores drop by much more than their own spacing above it (a spacing-normalised gap,
so a broad relevant set such as every circle of every colour is not cut at its first sub-cluster),
and nothing is relevant when the best few kept scores do not lie far enough above what generic
captions ("a photo.") score on this library (a null model), measured as a fraction of the room
between that null level and a perfect match. The other candidates measured (background z-score,
tail fit, null margin per image, the plain widest gap) are kept here for
benchmarks/cutoff_eval.py; benchmarks/CUTOFF.md has the figures that chose among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgsearch import lazy
from imgsearch.errors import ImgsearchError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py


POLICIES = ("auto", "none")
MIN_BACKGROUND = 20  # fewer sampled scores than this say nothing about the background
# auto, as measured in benchmarks/CUTOFF.md on the tiny trained CLIP:
# 1. where relevance ends (cluster_cut): among the top scores above the background median, the
#    gap after the i-th score is weighed against the mean spacing of the i scores above it,
#    gap * i / (range + SPACING_FLOOR * (best - median)); the cut is at the largest such ratio.
#    Gaps under MIN_GAP never count; none reaching it keeps everything above the median.
# 2. presence: the mean of the best PRESENCE_TOP kept scores (fewer if fewer are kept) must lie
#    at least PRESENCE_FRACTION of the way from the null level, the NULL_QUANTILE of what a bank
#    of generic captions (NULL_CAPTIONS) scores on the library, to a perfect match (cosine 1).
#    Below that floor nothing is relevant. PRESENCE_FRACTION is measured on one model only (see
#    CUTOFF.md), so it is the first thing to re-measure for a new model.
NULL_CAPTIONS = ("a photo.", "a photo of something.", "a photo of a thing.", "something", "a thing")
NULL_QUANTILE = 0.9
PRESENCE_FRACTION = 0.57
PRESENCE_TOP = 3
MIN_GAP = 0.02
SPACING_FLOOR = 0.1
# The background is a random sample of the whole library, so it holds the relevant photos too;
# robust statistics (median, MAD) keep them from moving the bar much.
MAD_TO_SIGMA = 1.4826
TAIL_FRACTION = 0.1  # tail_threshold's defaults (a measured candidate, not used by auto)
EXPECTED_FALSE = 0.05


@dataclass(frozen=True)
class CutoffDecision:
    """What the cutoff did: the first `kept` of `considered` hits pass `threshold`."""

    kept: int
    considered: int
    threshold: float | None  # None: nothing was cut (policy none, or no background to judge)
    method: str  # "none", "score" or "auto:<method>"

    def describe(self) -> str:
        """The stderr line: 'kept 14 of 200 (auto cutoff at 0.27)'."""
        if self.threshold is None:
            return f"kept {self.kept} of {self.considered} (no cutoff)"
        kind = "auto" if self.method.startswith("auto") else "score"
        return f"kept {self.kept} of {self.considered} ({kind} cutoff at {self.threshold:.2f})"


Policy = str | float


def parse_policy(value: object, *, setting: str = "cutoff") -> Policy:
    """'auto' | 'none' | a score in [-1, 1] (text or number) -> the policy; else ImgsearchError."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in POLICIES:
            return text
        try:
            value = float(text)
        except ValueError:
            raise ImgsearchError(
                f"{setting}: {value!r} is not a cutoff; use auto, none or a score such as 0.25"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImgsearchError(f"{setting}: {value!r} is not a cutoff; use auto, none or a score")
    score = float(value)
    if not (math.isfinite(score) and -1.0 <= score <= 1.0):
        raise ImgsearchError(f"{setting}: {value!r} is outside the cosine range -1..1")
    return score


def decide(
    top_scores: npt.NDArray[np.floating],
    background: npt.NDArray[np.floating],
    policy: Policy,
    *,
    null_floor: float | None = None,
) -> CutoffDecision:
    """How many of `top_scores` (sorted descending, the query's best candidates) to keep.

    `background`: the same query's scores over a random sample of the library (any order; a
    few hundred to a few thousand). `null_floor`: `null_floor(...)` of the library, computed
    once per library and model; without it `auto` cannot say "nothing is relevant" and only
    places the cut (method "auto:gap"). Only `auto` reads either.
    """
    top = np.asarray(top_scores, dtype=np.float64)
    if top.ndim != 1 or (top.size > 1 and np.any(np.diff(top) > 1e-6)):
        raise ValueError("top_scores must be one-dimensional and sorted descending")
    policy = parse_policy(policy)
    if policy == "none":
        return CutoffDecision(top.size, top.size, None, "none")
    if not isinstance(policy, str):
        return _keep_above(top, policy, "score")
    back = np.asarray(background, dtype=np.float64).ravel()
    back = back[np.isfinite(back)]
    if top.size == 0 or back.size < MIN_BACKGROUND:
        return CutoffDecision(top.size, top.size, None, "auto:no-background")
    median = float(np.median(back))
    kept = cluster_cut(top, median, MIN_GAP, SPACING_FLOOR)
    if kept == 0:  # nothing above the median: nothing stands out
        return CutoffDecision(0, top.size, median, "auto:gap")
    if null_floor is not None and float(np.mean(top[: min(kept, PRESENCE_TOP)])) < null_floor:
        return CutoffDecision(0, top.size, float(null_floor), "auto:null")
    method = "auto:null+gap" if null_floor is not None else "auto:gap"
    return _keep_above(top, float(top[kept - 1]), method)


def null_floor(
    null_scores: npt.NDArray[np.floating],
    *,
    quantile: float = NULL_QUANTILE,
    fraction: float = PRESENCE_FRACTION,
) -> float:
    """The presence floor of a library: `null_scores` are, for a random sample of its vectors,
    each vector's best score over the NULL_CAPTIONS embeddings, i.e.
    `(sample @ captions.T).max(axis=1)`. The floor lies `fraction` of the way from their
    `quantile` (the null level) to a perfect match, so the bar scales with the model's room."""
    scores = np.asarray(null_scores, dtype=np.float64).ravel()
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("null_floor needs at least one score")
    level = min(float(np.quantile(scores, quantile)), 1.0)
    return level + fraction * (1.0 - level)


def _keep_above(top: npt.NDArray[np.float64], threshold: float, method: str) -> CutoffDecision:
    kept = int(np.searchsorted(-top, -threshold, side="right"))  # top[i] >= threshold
    return CutoffDecision(kept, top.size, float(threshold), method)


# --- candidate methods (benchmarks/cutoff_eval.py measures them; `auto` uses the winner) ------


def robust_center_spread(background: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Median and MAD-based sigma of the background; spread floored so it is never 0."""
    center = float(np.median(background))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(background - center)))
    return center, max(spread, 1e-4)


def zscore_threshold(background: npt.NDArray[np.float64], z: float) -> float:
    """median + z robust sigmas: a Gaussian null."""
    center, spread = robust_center_spread(background)
    return center + z * spread


def tail_threshold(
    background: npt.NDArray[np.float64],
    *,
    tail_fraction: float = TAIL_FRACTION,
    expected_false: float = EXPECTED_FALSE,
    library_size: int | None = None,
) -> float:
    """Score that about `expected_false` of `library_size` unrelated photos would exceed.

    Peaks over threshold: above u (the 1 - tail_fraction quantile) the excesses are fitted by an
    exponential whose scale is their (median-based, so robust) mean; then
    P(s > t) = tail_fraction * exp(-(t - u) / scale), solved for P = expected_false / n.
    """
    n = library_size or background.size
    u = float(np.quantile(background, 1.0 - tail_fraction))
    excess = background[background > u] - u
    if excess.size < 3:
        return zscore_threshold(background, 4.0)
    scale = max(float(np.median(excess)) / math.log(2.0), 1e-4)  # exponential: median = s ln 2
    return u + scale * math.log(tail_fraction * n / expected_false)


def gap_cut(top: npt.NDArray[np.float64], floor: float, min_gap: float) -> float | None:
    """Knee/gap detection: the lowest score kept when cutting at the widest gap between
    consecutive scores above `floor` (the gap below the last one counts too); every score above
    `floor` when no gap reaches `min_gap`; None when no score reaches `floor`."""
    above = top[top >= floor]
    if above.size == 0:
        return None
    below = top[above.size] if above.size < top.size else floor
    gaps = above - np.append(above[1:], below)
    widest = int(np.argmax(gaps))
    return float(above[widest] if gaps[widest] >= min_gap else above[-1])


def cluster_cut(
    top: npt.NDArray[np.float64], floor: float, min_gap: float, spacing_floor: float
) -> int:
    """How many of `top` (sorted descending) form the leading cluster: the cut after the i-th
    score above `floor` that maximises gap_i * i / (top[0] - top[i-1] + spacing_floor *
    (top[0] - floor)), i.e. the gap in units of the mean spacing of the run it ends. The
    widest raw gap (gap_cut) stops a broad relevant set at its first sub-cluster, because the
    top of any spread is sparse; this ratio does not. When every score of `top` is above
    `floor`, `top` is only the head of a longer list, so the gap below its last score is
    unknown and does not count. Gaps under `min_gap` never count: none left keeps every score
    above `floor`; 0 when no score reaches `floor`."""
    above = top[top >= floor]
    if above.size == 0:
        return 0
    below = top[above.size] if above.size < top.size else above[-1]
    gaps = above - np.append(above[1:], below)
    run = np.arange(1, above.size + 1)
    ratio = gaps * run / (above[0] - above + spacing_floor * max(above[0] - floor, 1e-6))
    ratio[gaps < min_gap] = 0.0
    return int(np.argmax(ratio)) + 1 if ratio.max() > 0 else int(above.size)


def null_margin_keep(
    top: npt.NDArray[np.float64], null_top: npt.NDArray[np.float64], margin: float
) -> int:
    """Null model: keep the leading run of hits whose query score beats the best score of a
    bank of generic captions ("a photo.") for the same image by `margin`."""
    passes = top - null_top > margin
    return int(np.argmin(passes)) if not passes.all() else int(top.size)


__all__ = [
    "CutoffDecision",
    "POLICIES",
    "cluster_cut",
    "Policy",
    "NULL_CAPTIONS",
    "decide",
    "gap_cut",
    "null_floor",
    "null_margin_keep",
    "parse_policy",
    "tail_threshold",
    "zscore_threshold",
]
