"""`imgsearch eval ...`: the CLIP paper's protocols on a folder (imgsearch.clip.evaluate)."""

from __future__ import annotations

import json
from typing import Any

import click

from imgsearch.cli import _open_existing, cli, library_option
from imgsearch.cli_clip import CSV_HELP
from imgsearch.output import echo, warn


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
