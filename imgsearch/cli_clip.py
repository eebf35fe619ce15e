"""CLIP commands beyond ranking: classify, tag, tags, explain; album and eval in their modules."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from imgsearch.cli import _open_existing, cli, library_option, settings_from
from imgsearch.output import echo, render_rows, warn
from imgsearch.paths import canonical, display

LABELS_HELP = "Label set: everyday, imagenet, or a .toml / .txt file of labels."
CSV_HELP = "CSV: a file column (image/path) and a label column (class_name/label)."
TEMPLATES_HELP = "Template set: photo, simple, openai, or a .toml file (default: the set's)."


def _vectors_of(ctx: click.Context, lib: Any, files: tuple[str, ...]) -> Any:
    """Stored vectors for indexed files; the others are embedded with the library's model."""
    import numpy as np

    out, searcher = [], None
    for file in files:
        path = canonical(file)
        stored = lib.vector_for_path(path)
        if stored is not None:
            out.append(stored[1])
            continue
        if not os.path.exists(path):
            raise click.ClickException(f"{path}: no such file")
        if searcher is None:
            from imgsearch.search import Searcher

            searcher = Searcher(lib.path, settings=settings_from(ctx), one_shot=True)
        out.append(searcher.embed_image(path))
    if searcher is not None:
        searcher.close()
    return np.stack(out)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--labels", "labels", required=True, help=LABELS_HELP)
@click.option("--templates", help=TEMPLATES_HELP)
@click.option("-k", "--limit", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@library_option
@click.pass_context
def classify(
    ctx: click.Context,
    files: tuple[str, ...],
    labels: str,
    templates: str | None,
    limit: int,
    as_json: bool,
    library: str | None,
) -> None:
    """Zero-shot classify FILES: the top labels of a label set, with probabilities.

    Probabilities are the softmax of the model's logit scale times the cosine similarity, as
    in the CLIP paper. Indexed files use their stored vectors (no model is loaded).

    \b
    Example:
      imgsearch classify ~/Pictures/cat.jpg --labels imagenet --templates openai
      imgsearch classify a.jpg b.jpg --labels everyday -k 3 --json
    """
    import numpy as np

    from imgsearch.clip.zeroshot import classifier

    with _open_existing(ctx, library) as lib:
        clf = classifier(lib, labels, templates)
        vectors = _vectors_of(ctx, lib, files)
    probs, scores = clf.probabilities(vectors), clf.scores(vectors)
    results = []
    for file, p, s in zip(files, probs, scores):
        top = np.argsort(-p, kind="stable")[:limit]
        results.append(
            {
                "path": display(canonical(file)),
                "labels": [
                    {"label": clf.names[j], "prob": float(p[j]), "score": float(s[j])} for j in top
                ],
            }
        )
    if as_json:
        echo(json.dumps(results, indent=2, ensure_ascii=False))
        return
    rows = [
        {"path": r["path"], "#": n, "prob": f"{x['prob']:.4f}", "label": x["label"]}
        for r in results
        for n, x in enumerate(r["labels"], 1)
    ]
    echo(render_rows(rows, "table", ["path", "#", "prob", "label"]))


@cli.command()
@click.option("--labels", "labels", help=LABELS_HELP)
@click.option("--templates", help=TEMPLATES_HELP)
@click.option("--remove", "remove", metavar="SET", help="Remove the tags of an applied set.")
@library_option
@click.pass_context
def tag(
    ctx: click.Context,
    labels: str | None,
    templates: str | None,
    remove: str | None,
    library: str | None,
) -> None:
    """Tag every photo of the library with a label set, from the stored vectors.

    Exclusive sets (imagenet) give a photo its top label when it is at least twice as probable
    as the next; multi-label sets (everyday) give every label that clears its own threshold,
    calibrated over the library. Later `index` runs tag new photos the same way.

    \b
    Example:
      imgsearch tag --labels everyday
      imgsearch tag --labels my-labels.toml --templates openai
      imgsearch tag --remove everyday
    """
    from imgsearch.clip import tags as tags_mod

    if bool(labels) == bool(remove):
        raise click.UsageError("give either --labels SET or --remove SET")
    with _open_existing(ctx, library) as lib:
        if remove:
            gone = tags_mod.remove(lib, remove)
            warn(f"removed label set {remove}: {gone} tags")
            return
        assert labels is not None
        report = tags_mod.apply(lib, labels, templates)
    warn(
        f"tagged {report.tagged} of {report.photos} photos with set {report.name}: "
        f"{report.tags} tags (see them with: imgsearch tags)"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@library_option
@click.pass_context
def tags(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List the tags of the library with the number of photos carrying each.

    \b
    Example:
      imgsearch tags --json
    """
    from imgsearch.clip import tags as tags_mod

    with _open_existing(ctx, library) as lib:
        rows = tags_mod.counts(lib)
    echo(render_rows(rows, "json" if as_json else "table", ["set", "tag", "photos"]))


# ---- explain ----------------------------------------------------------------------------------
@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("query")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the heatmap PNG.")
@click.option(
    "--method",
    type=click.Choice(["occlusion", "gradeclip"]),
    default=None,
    help="occlusion (any model, the default) or gradeclip (open_clip ViTs, ~8x cheaper).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@library_option
@click.pass_context
def explain(
    ctx: click.Context,
    file: str,
    query: str,
    output: str | None,
    method: str | None,
    as_json: bool,
    library: str | None,
) -> None:
    """Show where in FILE the text QUERY matches: a heatmap over the photo.

    \b
    Example:
      imgsearch explain beach.jpg "a dog" -o dog-heat.png
      imgsearch explain beach.jpg "a dog" --method gradeclip
    """
    from pathlib import Path

    from imgsearch.clip.explain import explain_path, save_overlay
    from imgsearch.search import Searcher

    settings = settings_from(ctx, library=library)
    with Searcher(settings.library_path, settings=settings, one_shot=True) as searcher:
        exp = explain_path(searcher, file, query, method)
    if output:
        save_overlay(exp, Path(output))
        warn(f"wrote {output}")
    x, y = exp.peak()
    h, w = exp.heat.shape
    info = {
        "path": display(canonical(file)),
        "query": query,
        "score": exp.score,
        "peak": {"x": (x + 0.5) / w, "y": (y + 0.5) / h},  # fractions of the model's view
        # occlusion's heat is a score drop; Grad-ECLIP's has no such unit
        "max_drop": float(exp.heat.max()) if exp.method == "occlusion" else None,
        "method": exp.method,
    }
    if as_json:
        echo(json.dumps(info, indent=2))
        return
    where = f"strongest at x={info['peak']['x']:.2f}, y={info['peak']['y']:.2f} of the model's view"
    if info["max_drop"] is None:
        echo(f"score {exp.score:.4f}; {where} ({exp.method})")
    else:
        drop = info["max_drop"]
        echo(f"score {exp.score:.4f}; {where} (hiding it lowers the score by {drop:.4f})")


from imgsearch import cli_album, cli_eval  # noqa: E402,F401  (register their commands)
