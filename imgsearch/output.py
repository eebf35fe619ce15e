"""Hits and records -> text: a table for people, --json for programs, --paths for pipes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from imgsearch.search import Hit

FORMATS = ("table", "json", "paths")


def render_hits(hits: Sequence[Hit], fmt: str) -> str:
    """Every command that lists hits prints through here, so formats stay alike."""
    if fmt == "json":
        return json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False)
    if fmt == "paths":
        return "\n".join(h.path for h in hits)
    if not hits:
        return ""
    width = len(str(len(hits)))
    lines = [f"{'#':>{width}}  score   path"]
    lines += [f"{n:>{width}}  {h.score:6.4f}  {h.path}" for n, h in enumerate(hits, 1)]
    return "\n".join(lines)


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


def echo(text: str) -> None:
    """stdout: results only."""
    if text:
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
