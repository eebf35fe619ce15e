"""CLIP commands beyond ranking: classify, tag, tags, album, eval, explain (imgsearch.clip)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from imgsearch.cli import _open_existing, cli, library_option, settings_from
from imgsearch.output import echo, render_rows, warn

LABELS_HELP = "Label set: everyday, imagenet, or a .toml / .txt file of labels."
CSV_HELP = "CSV: a file column (image/path) and a label column (class_name/label)."
TEMPLATES_HELP = "Template set: photo, simple, openai, or a .toml file (default: the set's)."


def _vectors_of(ctx: click.Context, lib: Any, files: tuple[str, ...]) -> Any:
    """Stored vectors for indexed files; the others are embedded with the library's model."""
    import numpy as np

    out, searcher = [], None
    for file in files:
        path = os.path.abspath(os.path.expanduser(file))
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
                "path": os.path.abspath(file),
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


# ---- albums -----------------------------------------------------------------------------------
@cli.group()
def album() -> None:
    """Smart albums from a few example photos (and a text): membership follows the library.

    \b
    Example:
      imgsearch album create dogs --like rex.jpg --like bella.jpg --text "a dog"
      imgsearch album show dogs --paths
    """


def _embedder(ctx: click.Context, lib: Any) -> Any:
    """embed_image for example files that are not indexed (loads the model on first need)."""
    state: dict[str, Any] = {}

    def embed(path: str) -> Any:
        if not os.path.exists(path):
            raise click.ClickException(f"{path}: no such file")
        if "s" not in state:
            from imgsearch.search import Searcher

            state["s"] = Searcher(lib.path, settings=settings_from(ctx), one_shot=True)
        return state["s"].embed_image(path)

    return embed


def _abs(files: tuple[str, ...]) -> list[str]:
    return [os.path.abspath(os.path.expanduser(f)) for f in files]


def _album_row(a: Any) -> dict[str, Any]:
    return {
        "name": a.name,
        "text": a.text,
        "method": a.method,
        "like": len(a.positives),
        "unlike": len(a.negatives),
        "photos": a.members,
    }


def _split_examples(words: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """`--like A B --unlike C` -> ([A, B], [C]); each flag takes every file up to the next."""
    like: list[str] = []
    unlike: list[str] = []
    target = None
    for word in words:
        if word in ("--like", "--unlike"):
            target = like if word == "--like" else unlike
        elif word.startswith("--like=") or word.startswith("--unlike="):
            flag, _, value = word.partition("=")
            (like if flag == "--like" else unlike).append(value)
        elif word.startswith("-"):
            raise click.UsageError(f"unknown option {word}")
        elif target is None:
            raise click.UsageError(f"put --like or --unlike before {word}")
        else:
            target.append(word)
    return like, unlike


@album.command("create", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("examples", nargs=-1, type=click.UNPROCESSED)
@click.option("--text", help="What the album shows, in words (the prior before examples).")
@library_option
@click.pass_context
def album_create(
    ctx: click.Context,
    name: str,
    examples: tuple[str, ...],
    text: str | None,
    library: str | None,
) -> None:
    """Create album NAME from example photos (--like A.jpg B.jpg, --unlike C.jpg) and/or a text.

    \b
    Example:
      imgsearch album create beach --text "a beach" --like a.jpg b.jpg --unlike pool.jpg
    """
    from imgsearch.clip import albumstore

    like, unlike = _split_examples(examples)
    with _open_existing(ctx, library) as lib:
        made = albumstore.create(
            lib, name, _abs(tuple(like)), _abs(tuple(unlike)), text, _embedder(ctx, lib)
        )
    warn(f"album {name}: {made.members} photos ({made.method})")


@album.command("add")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--unlike", is_flag=True, help="Add FILES as photos that do not belong.")
@library_option
@click.pass_context
def album_add(
    ctx: click.Context, name: str, files: tuple[str, ...], unlike: bool, library: str | None
) -> None:
    """Add example photos to album NAME (as positives, or with --unlike as negatives).

    \b
    Example:
      imgsearch album add dogs rex2.jpg
      imgsearch album add dogs wolf.jpg --unlike
    """
    from imgsearch.clip import albumstore

    with _open_existing(ctx, library) as lib:
        got = albumstore.add(lib, name, _abs(files), not unlike, _embedder(ctx, lib))
    warn(f"album {name}: {got.members} photos ({got.method})")


@album.command("remove")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@library_option
@click.pass_context
def album_remove(
    ctx: click.Context, name: str, files: tuple[str, ...], library: str | None
) -> None:
    """Remove example photos from album NAME.

    \b
    Example:
      imgsearch album remove dogs wolf.jpg
    """
    from imgsearch.clip import albumstore

    with _open_existing(ctx, library) as lib:
        got = albumstore.remove(lib, name, _abs(files))
    warn(f"album {name}: {got.members} photos ({got.method})")


@album.command("delete")
@click.argument("name")
@library_option
@click.pass_context
def album_delete(ctx: click.Context, name: str, library: str | None) -> None:
    """Delete album NAME (its photos stay in the library).

    \b
    Example:
      imgsearch album delete dogs
    """
    from imgsearch.clip import albumstore

    with _open_existing(ctx, library) as lib:
        albumstore.delete(lib, name)
    warn(f"deleted album {name}")


@album.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@library_option
@click.pass_context
def album_list(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List the albums with their examples and number of photos.

    \b
    Example:
      imgsearch album list --json
    """
    from imgsearch.clip import albumstore

    with _open_existing(ctx, library) as lib:
        rows = [_album_row(a) for a in albumstore.list_albums(lib)]
    columns = ["name", "photos", "like", "unlike", "method", "text"]
    if not as_json:
        rows = [{**r, "text": r["text"] or ""} for r in rows]
    echo(render_rows(rows, "json" if as_json else "table", columns))


@album.command("show")
@click.argument("name")
@click.option("--json", "fmt", flag_value="json", help="Print a JSON array of hits.")
@click.option("--paths", "fmt", flag_value="paths", help="Print paths only, one per line.")
@library_option
@click.pass_context
def album_show(ctx: click.Context, name: str, fmt: str | None, library: str | None) -> None:
    """Show the photos of album NAME, best match first.

    \b
    Example:
      imgsearch album show dogs --paths
    """
    from imgsearch.clip import albumstore
    from imgsearch.output import render_hits
    from imgsearch.search import Hit

    with _open_existing(ctx, library) as lib:
        found = albumstore.members(lib, name)
        info = lib.info(i for i, _, _ in found)
    hits = [
        Hit(p, float(s), i, info[i].width, info[i].height, info[i].taken_at)
        for i, p, s in found
        if i in info
    ]
    echo(render_hits(hits, fmt or "table"))


# ---- eval -------------------------------------------------------------------------------------
@cli.group("eval")
def eval_group() -> None:
    """Measure the model on a labelled folder the way the CLIP paper does.

    \b
    Example:
      imgsearch eval zeroshot photos/ --labels photos/labels.csv
      imgsearch eval retrieval photos/ --captions captions.tsv
      imgsearch eval probe photos/ --labels photos/labels.csv --shots 1,2,4,8,16
    """


def eval_options(fn: Any) -> Any:
    fn = click.option("--out", type=click.Path(dir_okay=False), help="Write the JSON here.")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)
    fn = click.option("--pretrained", help="With --model: weights for the temporary library.")(fn)
    fn = click.option(
        "--model", help="Index DIR into a temporary library with this model (else: --library)."
    )(fn)
    fn = library_option(fn)
    return click.argument("folder", type=click.Path(exists=True, file_okay=False))(fn)


def _eval_library(ctx: click.Context, folder: str, library: str | None, model: str | None,
                  pretrained: str | None, stack: Any) -> tuple[Any, bool]:  # fmt: skip
    """(open Library, temporary?): the given library, or DIR indexed into a temporary one."""
    import tempfile

    from imgsearch.cli import index
    from imgsearch.library import Library

    if model is None:
        lib = _open_existing(ctx, library)
        return stack.enter_context(lib), False
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="imgsearch-eval-"))
    ctx.invoke(index, paths=(folder,), library=tmp, model=model, pretrained=pretrained, quiet=True)
    return stack.enter_context(Library.open(tmp)), True


def _finish(lib: Any, temporary: bool, kind: str, result: dict, out: str | None,
            as_json: bool, table: list[str]) -> None:  # fmt: skip
    from pathlib import Path

    from imgsearch.clip.evaluate import default_out

    if out:
        path = Path(out)
    elif temporary:
        path = Path(f"imgsearch-eval-{kind}.json").absolute()
    else:
        path = default_out(lib, kind)
    path.write_text(json.dumps(result, indent=2))
    echo(json.dumps(result, indent=2) if as_json else "\n".join(table))
    warn(f"wrote {path}")


@eval_group.command("zeroshot")
@eval_options
@click.option("--labels", "labels_csv", required=True, type=click.Path(dir_okay=False),
              help=CSV_HELP)  # fmt: skip
@click.option("--templates", "template_sets", default="photo,simple,openai", show_default=True,
              help="Comma-separated template sets; gains are against the first.")  # fmt: skip
@click.option("--classes", help="Label set of the classes (e.g. imagenet; a class_index column "
              "maps to it); default: the CSV's labels.")  # fmt: skip
@click.pass_context
def eval_zeroshot(ctx: click.Context, folder: str, library: str | None, model: str | None,
                  pretrained: str | None, as_json: bool, out: str | None, labels_csv: str,
                  template_sets: str, classes: str | None) -> None:  # fmt: skip
    """Zero-shot top-1 / top-5 / mean per-class accuracy of DIR's labelled photos.

    \b
    Example:
      imgsearch eval zeroshot ../shared/photos/imagenet-500 \\
          --labels ../shared/photos/imagenet-500/labels.csv --classes imagenet
    """
    import contextlib
    from pathlib import Path

    from imgsearch.clip import evaluate
    from imgsearch.clip.sets import load_label_set

    rows = evaluate.read_labels(Path(labels_csv), Path(folder))
    names = [t.strip() for t in template_sets.split(",") if t.strip()]
    with contextlib.ExitStack() as stack:
        lib, temporary = _eval_library(ctx, folder, library, model, pretrained, stack)
        label_set = load_label_set(classes) if classes else None
        if label_set is not None:
            rows = evaluate.relabel_by_index(Path(labels_csv), rows, label_set)
        result = evaluate.zeroshot(lib, rows, names, label_set)
        table = [f"{result['images']} images, {result['classes']} classes",
                 "templates  top1    top5    per-class  gain(top1)"]  # fmt: skip
        for name, r in result["templates"].items():
            table.append(
                f"{name:9s}  {r['top1']:.4f}  {r['top5']:.4f}  {r['mean_per_class']:.4f}"
                f"     {r['gain_top1']:+.4f}"
            )
        _finish(lib, temporary, "zeroshot", result, out, as_json, table)


@eval_group.command("retrieval")
@eval_options
@click.option("--captions", required=True, type=click.Path(dir_okay=False),
              help="TSV: FILE<TAB>CAPTION per line (several lines per file allowed).")  # fmt: skip
@click.pass_context
def eval_retrieval(ctx: click.Context, folder: str, library: str | None, model: str | None,
                   pretrained: str | None, as_json: bool, out: str | None,
                   captions: str) -> None:  # fmt: skip
    """Text->image and image->text Recall@1/5/10, with and without "a photo of".

    \b
    Example:
      imgsearch eval retrieval photos/ --captions captions.tsv --json
    """
    import contextlib
    from pathlib import Path

    from imgsearch.clip import evaluate

    rows = evaluate.read_captions(Path(captions), Path(folder))
    with contextlib.ExitStack() as stack:
        lib, temporary = _eval_library(ctx, folder, library, model, pretrained, stack)
        result = evaluate.retrieval(lib, rows)
        table = [f"{result['images']} images, {result['captions']} captions",
                 "captions  direction       R@1     R@5     R@10"]  # fmt: skip
        for mode in ("plain", "prefix"):
            for direction in ("text_to_image", "image_to_text"):
                r = result[mode][direction]
                table.append(
                    f"{mode:8s}  {direction:14s}  {r['R@1']:.4f}  {r['R@5']:.4f}  {r['R@10']:.4f}"
                )
        _finish(lib, temporary, "retrieval", result, out, as_json, table)


@eval_group.command("probe")
@eval_options
@click.option("--labels", "labels_csv", required=True, type=click.Path(dir_okay=False),
              help=CSV_HELP)  # fmt: skip
@click.option("--shots", default="1,2,4,8,16", show_default=True, help="Examples per class.")
@click.pass_context
def eval_probe(ctx: click.Context, folder: str, library: str | None, model: str | None,
               pretrained: str | None, as_json: bool, out: str | None, labels_csv: str,
               shots: str) -> None:  # fmt: skip
    """Few-shot linear-probe accuracy next to zero-shot, on the same held-out photos.

    \b
    Example:
      imgsearch eval probe photos/ --labels labels.csv --shots 1,2,4,8,16
    """
    import contextlib
    from pathlib import Path

    from imgsearch.clip import evaluate

    try:
        counts = [int(s) for s in shots.split(",") if s.strip()]
    except ValueError:
        raise click.UsageError(f"--shots takes numbers like 1,2,4,8, not {shots!r}") from None
    rows = evaluate.read_labels(Path(labels_csv), Path(folder))
    with contextlib.ExitStack() as stack:
        lib, temporary = _eval_library(ctx, folder, library, model, pretrained, stack)
        result = evaluate.probe(lib, rows, counts)
        table = [f"{result['images']} images, {result['classes']} classes",
                 "shots  probe   zero-shot"]  # fmt: skip
        for k, r in result["shots"].items():
            table.append(f"{k:>5}  {r['probe']:.4f}  {r['zeroshot']:.4f}")
        _finish(lib, temporary, "probe", result, out, as_json, table)


# ---- explain ----------------------------------------------------------------------------------
@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("query")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the heatmap PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@library_option
@click.pass_context
def explain(
    ctx: click.Context,
    file: str,
    query: str,
    output: str | None,
    as_json: bool,
    library: str | None,
) -> None:
    """Show where in FILE the text QUERY matches: a heatmap by patch occlusion.

    \b
    Example:
      imgsearch explain beach.jpg "a dog" -o dog-heat.png
    """
    from pathlib import Path

    from imgsearch.clip.explain import explain_path, save_overlay
    from imgsearch.search import Searcher

    settings = settings_from(ctx, library=library)
    with Searcher(settings.library_path, settings=settings, one_shot=True) as searcher:
        exp = explain_path(searcher, file, query)
    if output:
        save_overlay(exp, Path(output))
        warn(f"wrote {output}")
    x, y = exp.peak()
    h, w = exp.heat.shape
    info = {
        "path": os.path.abspath(file),
        "query": query,
        "score": exp.score,
        "peak": {"x": (x + 0.5) / w, "y": (y + 0.5) / h},  # fractions of the model's view
        "max_drop": float(exp.heat.max()),
    }
    if as_json:
        echo(json.dumps(info, indent=2))
    else:
        echo(
            f"score {exp.score:.4f}; strongest at x={info['peak']['x']:.2f}, "
            f"y={info['peak']['y']:.2f} of the model's view (hiding it lowers the score by "
            f"{info['max_drop']:.4f})"
        )
