"""Zero-shot tagging speed: `tag_s_100k_1k`, 100k stored vectors x 1,000 labels (issue 11).

    python benchmarks/clipbench.py [--n 100000] [--labels 1000] [--out FILE.json]

A library of n clustered 512-d vectors (benchmarks.synth) is stored once through Library.store
and cached under ~/.cache/imgsearch-bench; the classifier is random text-like rows for the
label count (building it from text is a one-off per model and set, cached as a .npy, and not
timed here). Times `imgsearch.clip.tags.apply_classifier`: reading every vector from SQLite,
scoring, choosing and writing the tags; the multi-label run includes the threshold fit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def build(path: Path, n: int) -> None:
    from benchmarks.synth import Mixture, sample
    from imgsearch.library import ImageRecord, Library
    from imgsearch.modelspec import ModelSpec, PreprocessSpec

    if (path / "library.db").is_file():
        with Library.open(path) as lib:
            if lib.count() == n:
                return
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    vectors = sample(Mixture(), n, seed=0)
    spec = ModelSpec("bench", "none", 512, PreprocessSpec((224, 224), (0.5,) * 3, (0.5,) * 3))
    with Library.open(path, create=True) as lib, lib.write_lock():
        lib.set_model_spec(spec)
        for start in range(0, n, 5000):
            lib.store(
                [
                    ImageRecord(f"/synthetic/{i:07d}.jpg", 1, 1, str(i), 1, 1, None, vectors[i])
                    for i in range(start, min(n, start + 5000))
                ],
                [],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from benchmarks.synth import Mixture, text_like
    from imgsearch.clip.sets import Label, LabelSet, TemplateSet
    from imgsearch.clip.tags import apply_classifier
    from imgsearch.clip.zeroshot import Classifier
    from imgsearch.library import Library

    path = Path(os.path.expanduser("~/.cache/imgsearch-bench")) / f"clip-{args.n}"
    t0 = time.perf_counter()
    build(path, args.n)
    print(f"library of {args.n}: {time.perf_counter() - t0:.1f} s (cached after the first run)")
    weights = text_like(Mixture(), args.labels, seed=1)
    labels = tuple(Label(f"label {i}") for i in range(args.labels))
    results = {"n": args.n, "labels": args.labels, "cpus": os.cpu_count()}
    with Library.open(path) as lib:
        for key, exclusive in (("tag_s_100k_1k", False), ("tag_s_100k_1k_exclusive", True)):
            clf = Classifier(
                LabelSet(f"bench-{exclusive}", labels, exclusive=exclusive),
                TemplateSet("photo", ("a photo of a {}.",)),
                weights,
                100.0,
                None,
            )
            t0 = time.perf_counter()
            report = apply_classifier(lib, "bench", clf)
            results[key] = round(time.perf_counter() - t0, 2)
            results[key + "_tags"] = report.tags
            print(f"{key}: {results[key]} s, {report.tags} tags on {report.tagged} photos")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
