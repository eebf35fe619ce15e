"""Hits and records -> text: a table for people, --json for programs, --paths for pipes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from imgsearch.paths import display, to_key

if TYPE_CHECKING:
    from imgsearch.search import Hit

FORMATS = ("table", "json", "paths", "null")


def render_paths(paths: Sequence[str], fmt: str) -> bytes:
    """The exact bytes of each path, one per line (`paths`, like find) or NUL-terminated
    (`null`, like find -print0: safe for any name, e.g. `| xargs -0`)."""
    if not paths:
        return b""
    end = b"\0" if fmt == "null" else b"\n"
    return b"".join(to_key(p) + end for p in paths)


def render_hits(hits: Sequence[Hit], fmt: str) -> str | bytes:
    """Every command that lists hits prints through here, so formats stay alike."""
    if fmt == "json":
        return json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False)
    if fmt in ("paths", "null"):
        return render_paths([h.path for h in hits], fmt)
    if not hits:
        return ""
    width = len(str(len(hits)))
    if all(h.score is None for h in hits):  # filters alone: newest first, by capture time
        lines = [f"{'#':>{width}}  {'taken':<25}  path"]
        lines += [
            f"{n:>{width}}  {h.taken_at or '?':<25}  {display(h.path)}"
            for n, h in enumerate(hits, 1)
        ]
        return "\n".join(lines)
    lines = [f"{'#':>{width}}  score   path"]
    lines += [f"{n:>{width}}  {_score(h.score)}  {display(h.path)}" for n, h in enumerate(hits, 1)]
    return "\n".join(lines)


def _score(score: float | None) -> str:
    """A hit's score in the table; '-' for a listing by filters alone (newest first)."""
    return f"{score:6.4f}" if score is not None else "     -"


def render_rows(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str]) -> str:
    """Plain records (errors, stats) as a table or JSON."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2, ensure_ascii=False, default=str)
    if not rows:
        return ""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for r in rows:
        out.append("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)).rstrip())
    return "\n".join(out)


def echo(text: str | bytes) -> None:
    """stdout: results only (bytes are written as they are: exact file names)."""
    if isinstance(text, bytes):
        if text:
            click.echo(text, nl=False)
    elif text:
        click.echo(text)


def warn(text: str) -> None:
    """stderr: skips, warnings, summaries."""
    click.echo(text, err=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
