"""The `imgsearch` command: parse, call the library, render; heavy imports stay inside commands."""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from imgsearch import config as config_mod
from imgsearch.errors import ImgsearchError
from imgsearch.output import echo, human_bytes, render_hits, render_rows, warn
from imgsearch.paths import display


class Group(click.Group):
    """Turns every ImgsearchError into one clean message and exit status 1; nothing else leaks."""

    def invoke(self, ctx: click.Context) -> Any:
        from imgsearch.query import QueryError

        try:
            return super().invoke(ctx)
        except QueryError as err:
            raise click.UsageError(str(err)) from err
        except ImgsearchError as err:
            raise click.ClickException(str(err)) from err
        except KeyboardInterrupt:
            warn("interrupted: batches already stored are kept; run the same command to continue")
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            if (ctx.obj or {}).get("verbose"):
                raise
            raise click.ClickException(
                f"unexpected error: {type(err).__name__}: {err} (run with -v for details, and "
                f"please report it)"
            ) from err


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Settings file (default: ~/.config/imgsearch/config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log diagnostics to stderr.")
@click.version_option(package_name="imgsearch")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, verbose: bool) -> None:
    """Semantic image search: index photo folders with CLIP, search them by text or example.

    \b
    Example:
      imgsearch index ~/Pictures
      imgsearch query "a dog on a beach"
      imgsearch query dog + beach - people --json
      imgsearch similar ~/Pictures/cat.jpg
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="imgsearch: %(message)s"
    )
    ctx.obj = {"config_file": config_file, "verbose": verbose}


def library_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--library",
        "library",
        type=click.Path(file_okay=False),
        help="Library folder (env IMGSEARCH_LIBRARY; default: XDG data dir).",
    )(fn)


def settings_from(ctx: click.Context, **flags: Any) -> config_mod.Settings:
    return config_mod.resolve(ctx.obj["config_file"], overrides=flags)


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--json / --paths / --null, the same on every command that lists hits."""
    fn = click.option(
        "-0",
        "--null",
        "fmt",
        flag_value="null",
        help="Print exact paths, each ended by a NUL byte (for xargs -0).",
    )(fn)
    fn = click.option(
        "--paths", "fmt", flag_value="paths", help="Print exact paths only, one per line."
    )(fn)
    fn = click.option("--json", "fmt", flag_value="json", help="Print a JSON array of hits.")(fn)
    return fn


def query_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--cutoff",
        help="Relevance cutoff: auto (decided per query), none, or a score such as 0.25.",
    )(fn)
    fn = click.option(
        "--in",
        "folder",
        type=click.Path(file_okay=False),
        help="Only return images inside this folder.",
    )(fn)
    fn = click.option("--min-score", type=float, help="Drop hits below this cosine similarity.")(fn)
    fn = click.option("-k", "--limit", type=click.IntRange(min=1), help="Number of results.")(fn)
    return fn


# ---- index ------------------------------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@library_option
@click.option("--model", help="open_clip model name, hf-hub:org/repo or local-dir:/path.")
@click.option("--pretrained", help="Pretrained tag, checkpoint file, or 'none' (random weights).")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per model call.")
@click.option("--workers", type=click.IntRange(min=0), help="Decode processes (0 = one per core).")
@click.option(
    "--decode",
    type=click.Choice(config_mod.DECODE_MODES),
    help="Decode JPEGs on the cpu, the gpu, or auto (gpu with a CUDA model).",
)
@click.option("--wait", is_flag=True, help="Wait for another run on the same library to finish.")
@click.option(
    "--allow-nested",
    is_flag=True,
    help="Allow the library inside a photo folder, or in a folder that holds other files.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.pass_context
def index(
    ctx: click.Context,
    paths: tuple[str, ...],
    library: str | None,
    model: str | None,
    pretrained: str | None,
    device: str | None,
    batch_size: int | None,
    workers: int | None,
    decode: str | None,
    wait: bool,
    allow_nested: bool,
    quiet: bool,
) -> None:
    """Add the images under PATHS to the library, or bring it up to date.

    The folders become the library's roots; with no PATHS, every root is indexed again.
    Unchanged files cost a stat; changed files are embedded again, moved files keep their
    vectors, deleted files leave the library. Unreadable files are reported and skipped.

    \b
    Example:
      imgsearch index ~/Pictures ~/Phone
      imgsearch index                      # all the library's folders again
      imgsearch index ~/Pictures --model local-dir:/models/clip
    """
    from imgsearch.library import DB_NAME, Library
    from indexer import pipeline
    from indexer.roots import check_location, check_new_library_folder

    settings = settings_from(
        ctx,
        library=library,
        model=model,
        pretrained=pretrained,
        device=device,
        batch_size=batch_size,
        workers=workers,
        decode=decode,
    )
    if not paths and not (settings.library_path / DB_NAME).is_file():
        raise click.UsageError("give the folders to index, e.g.  imgsearch index ~/Pictures")
    check_new_library_folder(str(settings.library_path), allowed=allow_nested)
    check_location(str(settings.library_path), paths, allowed=allow_nested)
    lib = Library.open(settings.library_path, create=True)
    with lib, lib.write_lock(wait=wait):
        if not paths and not any(r.kind == "root" for r in lib.roots()):
            raise click.UsageError(
                f"library {display(str(lib.path))} has no folders yet: imgsearch index PATH"
            )
        name, weights = pipeline.choose_model(lib, settings, explicit=bool(model or pretrained))
        progress = _progress_bar(quiet)

        def load() -> Any:
            from imgsearch.encoder import load_encoder

            if not quiet:
                warn(f"loading model {name}{' / ' + weights if weights else ''} ...")
            return load_encoder(name, weights, settings.device)

        try:
            result = pipeline.run(
                lib,
                list(paths),
                settings,
                load_encoder=load,
                model=(name, weights),
                on_progress=progress.update if progress else None,
                on_skip=lambda path, reason: warn(f"skipping {display(path)}: {reason}"),
                on_status=None if quiet else warn,
                allow_nested=allow_nested,
            )
        finally:
            if progress:
                progress.close()
    for old, new in result.renamed:
        warn(f"{display(old)} is gone; its photos were found under {display(new)} (moved)")
    for root, count, reason in result.missing:
        warn(
            f"folder {display(root)} {reason}: keeping its {count} photos, left out of results "
            f"until it is back (or: imgsearch forget {display(root)})"
        )
    if not quiet:
        warn(_summary(result))


def _summary(result: Any) -> str:
    rate = result.embedded / result.embed_seconds if result.embed_seconds > 0 else 0.0
    parts = [
        f"{result.added} added",
        f"{result.updated} updated",
        f"{result.moved} moved",
        f"{result.removed} removed",
        f"{len(result.skipped)} skipped",
        f"{result.unchanged} unchanged",
    ]
    text = f"done in {result.seconds:.1f} s"
    if rate:
        text += f" (embedding {rate:.1f} images/s)"
    text += ": " + ", ".join(parts)
    if result.shared:
        text += f" ({result.shared} byte-identical copies reused a vector)"
    if result.skipped:
        reasons = Counter(reason for _, reason in result.skipped)
        text += "\nskipped: " + "; ".join(f"{n} × {r}" for r, n in reasons.most_common(8))
        text += "\n(see them all with: imgsearch errors)"
    return text


class _Bar:
    """tqdm on stderr, only on a terminal."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True, desc="embedding")

    def update(self, p: Any) -> None:
        self.bar.total = p.total
        self.bar.n = p.done
        self.bar.set_postfix(failed=p.failed, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _progress_bar(quiet: bool) -> _Bar | None:
    return _Bar() if not quiet and sys.stderr.isatty() else None


# ---- query / similar --------------------------------------------------------------------------
def _searcher(ctx: click.Context, library: str | None, **flags: Any) -> Any:
    from imgsearch.search import Searcher

    settings = settings_from(ctx, library=library, **flags)
    return Searcher(settings.library_path, settings=settings, one_shot=True)


@cli.command()
@click.argument("terms", nargs=-1)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Query by an example image (repeatable).",
)
@click.option(
    "--minus", "minus", multiple=True, help="Text to push results away from (repeatable)."
)
@click.option(
    "--templates",
    type=click.Choice(config_mod.TEMPLATE_MODES),
    help="Prompt templates: none, photo (default) or ensemble.",
)
@query_options
@output_options
@library_option
@click.pass_context
def query(
    ctx: click.Context,
    terms: tuple[str, ...],
    images: tuple[str, ...],
    minus: tuple[str, ...],
    templates: str | None,
    limit: int | None,
    min_score: float | None,
    folder: str | None,
    cutoff: str | None,
    fmt: str | None,
    library: str | None,
) -> None:
    """Find images matching a text, an example image, filters, or a mix.

    TERMS are texts joined by + and -, with optional weights N*text and @FILE for images,
    and filters KEY:VALUE (after: before: year: month: camera: lens: in: ext: has: near:
    tag: album:; `|` for OR, a leading - negates). Filters alone list photos newest first.

    \b
    Example:
      imgsearch query "a dog on a beach"
      imgsearch query dog + beach - people -k 20
      imgsearch query "0.5*sunset" + @holiday.jpg --json
      imgsearch query --image cat.jpg --minus blurry --paths
      imgsearch query beach after:2021-06 camera:pixel -ext:png
      imgsearch query year:2023 has:gps
    """
    from imgsearch.query import Filter, Term, parse

    settings = settings_from(ctx, library=library, templates=templates, cutoff=cutoff)
    q = parse(terms, k=limit, min_score=min_score, templates=templates, cutoff=settings.cutoff)
    q = q.with_terms(*(Term("image", p) for p in images), *(Term("text", t, -1.0) for t in minus))
    if folder is not None:
        q = replace(q, filters=(*q.filters, Filter("in", (folder,))))
    if not q.terms and not q.filters:
        raise click.UsageError("give a text to search for, --image FILE or a filter")
    with _searcher(ctx, library, templates=templates, cutoff=cutoff) as searcher:
        result = searcher.search(q)
    _print_result(result, fmt)


def _print_result(result: Any, fmt: str | None) -> None:
    """Hits on stdout; on stderr what the search did: cutoff, empty filters, missing roots."""
    echo(render_hits(result.hits, fmt or "table"))
    for root, count, reason in result.left_out:
        warn(f"note: {count} photos under {display(root)} are left out: the folder {reason}")
    if result.cutoff is not None:
        warn(result.cutoff.describe())
    if result.matched == 0:
        warn("no photos match the filters")
    elif not result.hits:
        warn("no results")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@query_options
@output_options
@library_option
@click.pass_context
def similar(
    ctx: click.Context,
    file: str,
    limit: int | None,
    min_score: float | None,
    folder: str | None,
    cutoff: str | None,
    fmt: str | None,
    library: str | None,
) -> None:
    """Find images that look like FILE (FILE itself is left out; it need not be indexed).

    \b
    Example:
      imgsearch similar ~/Pictures/beach.jpg -k 5
    """
    from imgsearch.query import Filter, Query

    settings = settings_from(ctx, library=library, cutoff=cutoff)
    filters = (Filter("in", (folder,)),) if folder is not None else ()
    q = Query(k=limit, min_score=min_score, filters=filters, cutoff=settings.cutoff)
    with _searcher(ctx, library, cutoff=cutoff) as searcher:
        result = searcher.similar_to(file, q)
    _print_result(result, fmt)


# ---- housekeeping -----------------------------------------------------------------------------
def _open_existing(ctx: click.Context, library: str | None) -> Any:
    from imgsearch.library import Library

    return Library.open(settings_from(ctx, library=library).library_path)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@library_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """Show what the library holds: images, model, size on disk, last run.

    \b
    Example:
      imgsearch stats --json
    """
    import json

    from imgsearch.library import ERROR

    settings = settings_from(ctx, library=library)
    with _open_existing(ctx, library) as lib:
        spec = lib.model_spec()
        meta = lib.meta()
        last = lib.last_run()
        count = lib.count()
        info = {
            "library": str(lib.path),
            "images": count,
            "errors": lib.count(ERROR),
            "model": spec.name if spec else None,
            "pretrained": spec.pretrained if spec else None,
            "dim": spec.dim if spec else None,
            "index": "exact" if count <= settings.exact_search_max else "approximate (IVF)",
            "bytes": lib.disk_bytes(),
            "created_at": meta.get("created_at"),
            "updated_at": meta.get("updated_at"),
            "last_run": last,
        }
    if as_json:
        echo(json.dumps(info, indent=2, default=str))
        return
    lines = [
        f"library   {info['library']}",
        f"model     {spec.label() + f' ({spec.dim}-d)' if spec else '(none yet)'}",
        f"images    {info['images']} indexed, {info['errors']} failed",
        f"index     {info['index']}",
        f"size      {human_bytes(info['bytes'])}",
    ]
    if last:
        counts = ", ".join(
            f"{last[k]} {k}"
            for k in ("added", "updated", "moved", "removed", "skipped", "unchanged")
        )
        lines.append(
            f"last run  {last['finished_at'] or last['started_at']} ({last['status']}): {counts}"
        )
    echo("\n".join(lines))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@library_option
@click.pass_context
def errors(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List the files that could not be indexed, and why.

    \b
    Example:
      imgsearch errors --json
    """
    from imgsearch.paths import json_fields

    with _open_existing(ctx, library) as lib:
        rows = [{**json_fields(p), "reason": r} for p, r in lib.errors()]
    echo(render_rows(rows, "json" if as_json else "table", ["path", "reason"]))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@library_option
@click.pass_context
def folders(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List the folders the library covers: images, last indexed, and whether each is there.

    \b
    Example:
      imgsearch folders
    """
    from imgsearch.folders import absence
    from imgsearch.paths import json_fields

    with _open_existing(ctx, library) as lib:
        counts = lib.counts_by_root()
        rows = []
        for root in lib.roots():
            images, failed = counts.get(root.id, (0, 0))
            state = "excluded" if root.kind == "excluded" else (absence(root) or "ok")
            rows.append(
                {
                    **json_fields(root.path),
                    "kind": root.kind,
                    "images": images,
                    "failed": failed,
                    "indexed_at": root.indexed_at,
                    "status": state,
                }
            )
        loose = counts.get(None, (0, 0))
    if as_json:
        echo(render_rows(rows, "json", []))
        return
    table = [
        {
            "folder": r["path"],
            "images": r["images"] if r["kind"] == "root" else "-",
            "failed": r["failed"] if r["kind"] == "root" else "-",
            "last indexed": r["indexed_at"] or "never",
            "status": "ok" if r["status"] == "ok" else r["status"],
        }
        for r in rows
    ]
    echo(render_rows(table, "table", ["folder", "images", "failed", "last indexed", "status"]))
    if not rows:
        warn("no folders yet: imgsearch index PATH")
    if sum(loose):
        warn(f"({loose[0]} images were indexed as single files, outside these folders)")


@cli.command()
@click.argument("path", type=click.Path())
@library_option
@click.pass_context
def forget(ctx: click.Context, path: str, library: str | None) -> None:
    """Remove a folder from the library: a root, or a folder inside one, with its images.

    Files on disk are never touched. A forgotten folder inside a root stays out of later
    `index` runs until you index it again by name.

    \b
    Example:
      imgsearch forget /media/old-drive/photos
      imgsearch forget ~/Pictures/screenshots
    """
    from imgsearch.library import Library
    from imgsearch.paths import canonical, is_inside
    from imgsearch.vectors import IndexParams

    settings = settings_from(ctx, library=library)
    with Library.open(settings.library_path) as lib, lib.write_lock():
        roots = lib.roots()
        spelled = {canonical(path), os.path.abspath(os.path.expanduser(path))}
        named = [r for r in roots if r.path in spelled]  # a root may be gone: no realpath then
        target = named[0].path if named else canonical(path)
        is_root = any(r.kind == "root" for r in named)
        if not is_root and not any(r.kind == "root" and is_inside(target, r.path) for r in roots):
            raise ImgsearchError(
                f"{display(target)} is not one of the library's folders (see: imgsearch folders)"
            )
        inside = [r.id for r in roots if is_inside(r.path, target)]  # nested roots go too
        gone = lib.forget(target, inside)
        if not is_root:
            lib.add_root(target, None, kind="excluded")
        lib.save_vector_index(IndexParams.from_settings(settings))
    what = "folder" if is_root else "folder (left out of its root from now on)"
    warn(f"forgot {what} {display(target)}: {gone} images removed from the library")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(prog_name="imgsearch")


if __name__ == "__main__":  # pragma: no cover
    main()
from imgsearch import cli_serve  # noqa: E402,F401  (registers commands)
