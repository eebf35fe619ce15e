"""`imgsearch album ...`: few-shot smart albums (imgsearch.clip.albumstore)."""

from __future__ import annotations

import os
from typing import Any

import click

from imgsearch.cli import _open_existing, cli, library_option, output_options, settings_from
from imgsearch.output import echo, render_rows, warn
from imgsearch.paths import canonical


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
    return [canonical(f) for f in files]


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
@output_options
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
        Hit(p, float(s), i, info[i].width, info[i].height, info[i].taken_at, info[i])
        for i, p, s in found
        if i in info
    ]
    echo(render_hits(hits, fmt or "table"))
