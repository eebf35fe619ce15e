"""The CLIP paper's protocols on a folder: zero-shot accuracy, retrieval recall, linear probe.

Inputs are a library (vectors by path) and a labels CSV or captions TSV naming files in DIR.
Every figure comes from stored image vectors and the library's text encoder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgsearch.clip.sets import Label, LabelSet, load_template_set
from imgsearch.clip.zeroshot import TextModel, classifier, text_model
from imgsearch.errors import ImgsearchError

if TYPE_CHECKING:
    from imgsearch.library import Library

PATH_COLUMNS = ("image", "path", "file", "filename")
LABEL_COLUMNS = ("class_name", "label", "class")
PREFIX = "a photo of "


def read_labels(csv_path: Path, folder: Path) -> list[tuple[str, str]]:
    """(absolute path, label) rows of a CSV with a header naming a file and a label column."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImgsearchError(f"cannot read labels file {csv_path}: {exc}") from exc
    header = list(rows[0]) if rows else []
    path_col = next((c for c in PATH_COLUMNS if c in header), None)
    label_col = next((c for c in LABEL_COLUMNS if c in header), None)
    if not path_col or not label_col:
        raise ImgsearchError(
            f"{csv_path}: needs a header with a file column ({', '.join(PATH_COLUMNS)}) and a "
            f"label column ({', '.join(LABEL_COLUMNS)}); found {header}"
        )
    return [(str((folder / r[path_col]).absolute()), r[label_col].strip()) for r in rows]


def relabel_by_index(
    csv_path: Path, rows: list[tuple[str, str]], classes: LabelSet
) -> list[tuple[str, str]]:
    """Rows labelled with `classes`' names through the CSV's class_index column, if it has one
    (ImageNet CSVs carry the original WordNet names, the class set open_clip's cleaned ones)."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        indices = [r.get("class_index") for r in csv.DictReader(fh)]
    if not indices or any(i is None or not str(i).strip().isdigit() for i in indices):
        return rows
    names = classes.names
    if max(int(i) for i in indices) >= len(names):  # type: ignore[arg-type]
        raise ImgsearchError(f"{csv_path}: class_index beyond the {len(names)} classes")
    return [(p, names[int(i)]) for (p, _), i in zip(rows, indices)]  # type: ignore[arg-type]


def read_captions(tsv_path: Path, folder: Path) -> list[tuple[str, str]]:
    """(absolute path, caption) rows of a TSV: FILE<TAB>CAPTION, several lines per file allowed."""
    out = []
    try:
        lines = tsv_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImgsearchError(f"cannot read captions file {tsv_path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise ImgsearchError(f"{tsv_path}:{n}: expected FILE<TAB>CAPTION")
        out.append((str((folder / name).absolute()), text.strip()))
    return out


def vectors_for(library: Library, paths: list[str]) -> npt.NDArray[np.float32]:
    vecs = []
    for p in paths:
        stored = library.vector_for_path(p)
        if stored is None:
            raise ImgsearchError(f"{p} is not in library {library.path} (not indexed, or failed)")
        vecs.append(stored[1])
    return np.stack(vecs)


def accuracy(scores: npt.NDArray[np.float32], truth: npt.NDArray[np.int64]) -> dict[str, float]:
    """top-1, top-5 and mean per-class accuracy of (N, C) scores against class indices."""
    order = np.argsort(-scores, axis=1, kind="stable")
    top1 = order[:, 0] == truth
    top5 = (order[:, :5] == truth[:, None]).any(axis=1)
    per_class = [top1[truth == c].mean() for c in np.unique(truth)]
    return {
        "top1": float(top1.mean()),
        "top5": float(top5.mean()),
        "mean_per_class": float(np.mean(per_class)),
    }


def zeroshot(
    library: Library,
    rows: list[tuple[str, str]],
    template_sets: list[str],
    classes: LabelSet | None = None,
) -> dict[str, Any]:
    """Accuracy per template set; the ensembling gain is each set's top-1 minus the first's."""
    if classes is None:
        classes = LabelSet("eval", tuple(Label(n) for n in dict.fromkeys(r[1] for r in rows)))
    names = classes.names
    missing = sorted({label for _, label in rows} - set(names))
    if missing:
        raise ImgsearchError(f"labels {missing[:5]} are not among the classes of {classes.name}")
    truth = np.asarray([names.index(label) for _, label in rows])
    vectors = vectors_for(library, [p for p, _ in rows])
    model = text_model(library)
    out: dict[str, Any] = {"images": len(rows), "classes": len(names), "templates": {}}
    for name in template_sets:
        clf = classifier(library, classes, load_template_set(name), model=model)
        out["templates"][name] = accuracy(clf.scores(vectors), truth)
    first = out["templates"][template_sets[0]]["top1"]
    for name in template_sets:
        out["templates"][name]["gain_top1"] = out["templates"][name]["top1"] - first
    return out


def recall_at(ranks: npt.NDArray[np.int64], ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    return {f"R@{k}": float((ranks < k).mean()) for k in ks}


def retrieval(library: Library, rows: list[tuple[str, str]]) -> dict[str, Any]:
    """text->image and image->text Recall@1/5/10, captions as given and with PREFIX."""
    paths = list(dict.fromkeys(p for p, _ in rows))
    image_of = np.asarray([paths.index(p) for p, _ in rows])
    images = vectors_for(library, paths)
    model: TextModel = text_model(library)
    out: dict[str, Any] = {"images": len(paths), "captions": len(rows)}
    for mode, fmt in (("plain", "{}"), ("prefix", PREFIX + "{}")):
        captions = [fmt.format(c) for _, c in rows]
        unique = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        # one row of scores per distinct caption, copied: copies of a caption then tie exactly
        # (scored apart, their last bits differ with the rows around them in the product)
        sim = (model.embed(list(unique)) @ images.T)[[unique[c] for c in captions]]
        own = sim[np.arange(len(rows)), image_of]
        t2i = (sim > own[:, None]).sum(axis=1)  # images ranked above the right one
        i2t = []
        for i in range(len(paths)):
            col = sim[:, i]
            best_own = col[image_of == i].max()
            i2t.append(int((col > best_own).sum()))
        out[mode] = {
            "text_to_image": recall_at(t2i),
            "image_to_text": recall_at(np.asarray(i2t)),
        }
    return out


def _probe_fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], k: int) -> Any:
    """L2 logistic regression (L-BFGS); C by cross-validation when each class has >= 2 shots."""
    import warnings

    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if k >= 2:
            cv = StratifiedKFold(min(k, 4), shuffle=True, random_state=0)
            model = LogisticRegressionCV(Cs=np.logspace(-2, 3, 6), cv=cv, max_iter=2000)
        else:
            model = LogisticRegression(C=1.0, max_iter=2000)
        return model.fit(x.astype(np.float64), y)


def probe(
    library: Library, rows: list[tuple[str, str]], shots: list[int], seeds: int = 3
) -> dict[str, Any]:
    """Few-shot linear-probe accuracy per shot count next to zero-shot ("photo") on the same
    held-out images (the rest of each class), averaged over `seeds` draws."""
    names = list(dict.fromkeys(label for _, label in rows))
    y = np.asarray([names.index(label) for _, label in rows])
    x = vectors_for(library, [p for p, _ in rows])
    classes = LabelSet("eval", tuple(Label(n) for n in names))
    zs = classifier(library, classes, load_template_set("photo")).scores(x).argmax(axis=1)
    out: dict[str, Any] = {"images": len(rows), "classes": len(names), "shots": {}}
    for k in shots:
        probe_acc, zero_acc = [], []
        for seed in range(seeds):
            rng = np.random.default_rng([seed, k])
            train = np.concatenate(
                [rng.choice(np.flatnonzero(y == c), k, replace=False) for c in range(len(names))]
                if all((y == c).sum() > k for c in range(len(names)))
                else [np.empty(0, np.int64)]
            )
            if not len(train):
                break
            test = np.setdiff1d(np.arange(len(y)), train)
            model = _probe_fit(x[train], y[train], k)
            probe_acc.append(float((model.predict(x[test]) == y[test]).mean()))
            zero_acc.append(float((zs[test] == y[test]).mean()))
        if probe_acc:
            out["shots"][str(k)] = {
                "probe": float(np.mean(probe_acc)),
                "zeroshot": float(np.mean(zero_acc)),
            }
    return out


def default_out(library: Library, kind: str) -> Path:
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = library.path / "eval"
    os.makedirs(folder, exist_ok=True)
    return folder / f"{kind}-{stamp}.json"
