"""Few-shot album stages compared: text only, Rocchio, logistic regression (issue 11).

    python benchmarks/albumeval.py --tiny LIBRARY [--tiny LIBRARY2]  # shapes libraries, tiny CLIP
    python benchmarks/albumeval.py --seeds 0,1,2                       # synthetic clusters only

For each concept and each example count k (k positives and k negatives, drawn with fixed
seeds, 3 draws), every stage is fitted on the examples plus random library photos and scored
on the photos that are not examples: average precision (ranking) and F1 of the membership
threshold. Deterministic: the same figures on every run. `stage_gains` says, per set and k, by
how much the stage used at k beats the one before it (Rocchio - text below LOGREG_MIN examples,
logistic regression - Rocchio from there; average precision).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imgsearch.clip.albums import LOGREG_MIN, RANDOM_NEGATIVES, average_precision, fit

COUNTS = (1, 2, 4, 8, 16)
DRAWS = 3
METHODS = ("text", "rocchio", "logreg")

Concept = tuple[str, np.ndarray, "np.ndarray | None"]  # name, member mask, text vector


def evaluate(
    vectors: np.ndarray,
    concepts: list[Concept],
    counts: tuple[int, ...] = COUNTS,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, dict[str, list[float]]]:
    """{method: {k: [mean AP, mean F1]}} over concepts and draws."""
    out: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for k in counts:
        sums = {m: np.zeros(2) for m in methods}
        runs = {m: 0 for m in methods}
        for ci, (_, members, text) in enumerate(concepts):
            for draw in range(DRAWS):
                rng = np.random.default_rng([ci, draw, k])
                pos_all, neg_all = np.flatnonzero(members), np.flatnonzero(~members)
                if len(pos_all) <= k or len(neg_all) <= k:
                    continue
                pos = rng.choice(pos_all, k, replace=False)
                neg = rng.choice(neg_all, k, replace=False)
                rest = np.setdiff1d(np.arange(len(vectors)), np.r_[pos, neg])
                bg = rng.choice(rest, min(RANDOM_NEGATIVES, len(rest) // 2), replace=False)
                for method in methods:
                    if (method == "text" and text is None) or (method == "logreg" and k < 2):
                        continue
                    scorer = fit(vectors[pos], vectors[neg], text, vectors[bg], method=method)
                    s = scorer.scores(vectors[rest])
                    truth = members[rest]
                    pred = s >= scorer.threshold
                    tp = float((pred & truth).sum())
                    f1 = 2 * tp / max(1.0, pred.sum() + truth.sum())
                    sums[method] += (average_precision(s, truth), f1)
                    runs[method] += 1
        for method in methods:
            if runs[method]:
                out[method][str(k)] = [round(float(v), 4) for v in sums[method] / runs[method]]
    return out


def tiny_concepts(library: Path) -> tuple[np.ndarray, list[Concept]]:
    """Colour, shape and two-class-union concepts on a shapes library (paths name the class)."""
    from imgsearch.clip.zeroshot import text_model
    from imgsearch.library import Library
    from tests.support.shapes import COLORS, SHAPES

    with Library.open(library) as lib:
        ids, vectors = (np.concatenate(p) for p in zip(*lib.vectors()))
        paths = {f.id: Path(f.path).name for f in lib.known_files().values()}
        embed = text_model(lib).embed
    names = [paths[int(i)] for i in ids]
    concepts: list[Concept] = []
    for c in COLORS:
        text = embed([f"a photo of something {c}."])[0]
        concepts.append((c, np.array([n.startswith(c + "_") for n in names]), text))
    for s in SHAPES:
        text = embed([f"a photo of a {s}."])[0]
        concepts.append((s, np.array([f"_{s}_" in n for n in names]), text))
    for a, b in (("red_circle", "blue_star"), ("green_square", "yellow_triangle"),
                 ("purple_star", "red_square"), ("blue_circle", "green_triangle")):  # fmt: skip
        concepts.append((f"{a}|{b}", np.array([n.startswith((a, b)) for n in names]), None))
    return vectors, concepts


def synthetic_concepts(seed: int = 0) -> tuple[np.ndarray, list[Concept]]:
    """40 clusters in 64-d; concepts are unions of 2 clusters, half with a noisy text prior."""
    rng = np.random.default_rng(seed)
    dim, clusters, per = 64, 40, 60
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = np.repeat(np.arange(clusters), per)
    x = centres[label] + rng.standard_normal((len(label), dim)) * 1.2 / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    concepts: list[Concept] = []
    for i in range(10):
        a, b = 2 * i, 2 * i + 1
        text = None
        if i % 2 == 0:
            t = centres[a] + centres[b] + rng.standard_normal(dim) * 0.15
            text = (t / np.linalg.norm(t)).astype(np.float32)
        concepts.append((f"c{a}|c{b}", np.isin(label, [a, b]), text))
    return x.astype(np.float32), concepts


def stage_gains(figures: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """{k: AP of the stage used at k minus AP of the stage before it}, where both were run."""
    gains = {}
    for k in COUNTS:
        used, before = ("logreg", "rocchio") if k >= LOGREG_MIN else ("rocchio", "text")
        if str(k) in figures.get(used, {}) and str(k) in figures.get(before, {}):
            gains[str(k)] = round(figures[used][str(k)][0] - figures[before][str(k)][0], 4)
    return gains


def table(figures: dict[str, dict[str, list[float]]]) -> Iterator[str]:
    yield "method    " + "  ".join(f"k={k:<9}" for k in COUNTS) + "   (AP / F1)"
    for method, per_k in figures.items():
        cells = [
            f"{per_k[str(k)][0]:.3f}/{per_k[str(k)][1]:.3f}" if str(k) in per_k else "-" * 11
            for k in COUNTS
        ]
        yield f"{method:9s} " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tiny_help = "library of shapes indexed with the tiny CLIP (repeatable)"
    parser.add_argument("--tiny", type=Path, action="append", default=[], help=tiny_help)
    parser.add_argument("--seeds", default="0", help="synthetic cluster seeds, e.g. 0,1,2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {"figures": {}, "stage_gains": {}}
    sets = [(f"tiny {lib.parent.name}", lambda lib=lib: tiny_concepts(lib)) for lib in args.tiny]
    sets += [(f"synthetic seed {s}", lambda s=int(s): synthetic_concepts(s))
             for s in args.seeds.split(",")]  # fmt: skip
    for name, load in sets:
        vectors, concepts = load()
        for part, chosen in (
            ("with text", [c for c in concepts if c[2] is not None]),
            ("examples only", [c for c in concepts if c[2] is None]),
        ):
            key = f"{name}, {part}"
            figures = evaluate(vectors, chosen)
            results["figures"][key] = figures
            results["stage_gains"][key] = stage_gains(figures)
            print(f"{key}: {len(vectors)} vectors, {len(chosen)} concepts", flush=True)
            print("\n".join(table(figures)))
            print("stage gain (AP):", results["stage_gains"][key], flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
