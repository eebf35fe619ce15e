"""Few-shot smart albums: a definition (examples + text), a fitted direction, a membership.

The scorer is always one direction w and bias b (member when x . w + b >= threshold), so new
photos cost one dot product each at index time. It is fitted by stage:

- text only: w = the text's embedding ("a photo of a {text}.");
- a few examples (fewer than LOGREG_MIN positives or negatives): Rocchio with the text as a
  prior, training-free: w = lam * text / spread + (1 - lam) * (mean(positives) - centre) / spread,
  the centre being the mean of the negatives and the (down-weighted) random library photos, and
  lam = PRIOR_SHOTS / (k + PRIOR_SHOTS) for k positives: the text counts as PRIOR_SHOTS examples
  (a prototype with a prior, as in Tip-Adapter and the CLIP paper's "zero-shot matches a 4-shot
  probe");
- LOGREG_MIN positives and negatives or more: L2 logistic regression on the frozen vectors
  (scikit-learn L-BFGS, class-balanced, C by 5-fold cross-validation as in CLIP's linear
  probe), random library photos added as down-weighted negatives, and the Rocchio score as one
  more feature, scaled up so that leaning on it costs little under the L2 penalty: a strongly
  regularised probe falls back to the previous stage instead of to nothing (L2-SP style).

Constants and thresholds measured with benchmarks/albumeval.py (synthetic clusters, several
seeds, then the tiny trained CLIP): text/Rocchio cut at the midpoint between the positives' mean
score and the mean score of the negatives plus random library photos; the logistic regression
at p = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

LOGREG_MIN = 8
RANDOM_NEGATIVES = 256
WEAK_WEIGHT = 0.25  # a random library photo may belong to the album: it counts a quarter
CS = np.logspace(-2, 3, 11)
PRIOR_SHOTS = 8.0  # the text prior's weight, in examples (measured: 4, 8, 12, 16, 32 tried)
PRIOR_SCALE = 2.0  # the Rocchio feature's scale in the probe (measured: 2 and 5 tried)

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Scorer:
    method: str  # "text" | "rocchio" | "logreg"
    weights: npt.NDArray[np.float32]  # (dim,)
    bias: float
    threshold: float

    def scores(self, vectors: Vectors) -> npt.NDArray[np.float32]:
        return (np.asarray(vectors, np.float32) @ self.weights + self.bias).astype(np.float32)


def _unit(v: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _empty(dim: int) -> Vectors:
    return np.empty((0, dim), np.float32)


def fit(
    positives: Vectors,
    negatives: Vectors,
    text: npt.NDArray[np.float32] | None,
    background: Vectors,
    *,
    method: str | None = None,
) -> Scorer:
    """The album's scorer from its examples, text prior and random library photos."""
    dim = background.shape[1] if len(background) else positives.shape[1]
    positives = positives if len(positives) else _empty(dim)
    negatives = negatives if len(negatives) else _empty(dim)
    if method is None:
        many = len(positives) >= LOGREG_MIN and len(negatives) >= LOGREG_MIN
        method = "logreg" if many else ("rocchio" if len(positives) else "text")
    if method == "logreg":
        return _logreg(
            positives, negatives, background, _rocchio(positives, negatives, text, background)
        )
    direction = _rocchio(positives, negatives, text, background) if method == "rocchio" else None
    if direction is None:
        direction = np.zeros(dim, np.float32) if text is None else np.asarray(text, np.float32)
    if not np.any(direction):
        raise ValueError("an album needs a text or at least one positive example")
    w = _unit(direction)
    return Scorer(method, w, 0.0, _midpoint(w, positives, negatives, background, text))


def _rocchio(
    positives: Vectors,
    negatives: Vectors,
    text: npt.NDArray[np.float32] | None,
    background: Vectors,
) -> Vectors:
    """The text prior blended with the examples' prototype (unit vector; zeros without either).

    Text and image vectors sit in different cones (the modality gap): each part is scaled by the
    spread of its scores over the library before they are added. The prototype is the positives'
    mean minus the centre of the negatives and the library photos (these at WEAK_WEIGHT each),
    which removes the component every photo shares."""
    dim = background.shape[1] if len(background) else positives.shape[1]
    direction = np.zeros(dim, np.float64)
    if text is not None:
        t = np.asarray(text, np.float32)
        direction += t / _spread(t, background)
    k = len(positives)
    if k:
        weights = np.r_[np.ones(len(negatives)), np.full(len(background), WEAK_WEIGHT)]
        rest = np.concatenate([negatives, background])
        shots = positives.mean(axis=0)
        if len(rest):
            shots = shots - (weights[:, None] * rest).sum(axis=0) / weights.sum()
        share = k / (k + PRIOR_SHOTS) if text is not None else 1.0
        direction = (1 - share) * direction + share * shots / _spread(shots, background)
    return _unit(direction) if np.any(direction) else direction.astype(np.float32)


def _spread(direction: npt.NDArray[np.float32], background: Vectors) -> float:
    """Standard deviation of the library's scores along `direction` (1 without photos)."""
    if len(background) < 2:
        return 1.0
    return max(float((background @ direction).std()), 1e-6)


def _midpoint(
    w: Vectors, positives: Vectors, negatives: Vectors, background: Vectors, text: Vectors | None
) -> float:
    """Halfway between the positives' mean score (the text's own, without any) and the rest's."""
    high = float((positives @ w).mean()) if len(positives) else float(np.dot(text, w))
    rest = np.concatenate([negatives, background]) if len(background) else negatives
    if not len(rest):
        return high - 0.1
    low = float((rest @ w).mean())
    return (high + low) / 2 if high > low else high


def _logreg(positives: Vectors, negatives: Vectors, background: Vectors, prior: Vectors) -> Scorer:
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    x = np.concatenate([positives, negatives, background]).astype(np.float64)
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives) + len(background))]
    weight = np.r_[np.ones(len(positives) + len(negatives)), np.full(len(background), WEAK_WEIGHT)]
    scale = PRIOR_SCALE / _spread(prior, background)
    x = np.c_[x, scale * (x @ prior)]
    folds = int(min(5, len(positives), len(y) - len(positives)))
    model = LogisticRegressionCV(
        Cs=CS,
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
        class_weight="balanced",
        solver="lbfgs",
        max_iter=2000,
        scoring="neg_log_loss",
    )
    # One BLAS thread: these problems are tiny, and on a busy 2-core machine threaded BLAS made
    # each fit ~10x slower (0.16 s vs 0.01 s measured).
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.8's l1_ratios notice
        model.fit(x, y, sample_weight=weight)
    coef = model.coef_[0]
    w = coef[:-1] + coef[-1] * scale * prior  # the Rocchio feature folded back: one direction
    return Scorer("logreg", w.astype(np.float32), float(model.intercept_[0]), 0.0)


def average_precision(scores: npt.NDArray[np.floating], truth: npt.NDArray[np.bool_]) -> float:
    """Mean of precision at each relevant item of the ranking (ties broken by index)."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())
