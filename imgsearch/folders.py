"""Whether a library's roots are there: a renamed, deleted or unmounted root keeps its images,
and searches leave them out (with a note) until it is back or forgotten."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from imgsearch.library import Library, Root

GONE = "is not there (renamed, deleted, or a drive that is not mounted)"
UNMOUNTED = "looks unmounted (it is empty and on another device than when it was indexed)"


@dataclass(frozen=True)
class MissingRoot:
    """A registered root this run could not scan, and why."""

    root: Root
    reason: str


def absence(root: Root) -> str | None:
    """Why `root` cannot be scanned now, or None when it is there."""
    try:
        st = os.stat(root.path)
    except FileNotFoundError:
        return GONE
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISDIR(st.st_mode):
        return "is no longer a folder"
    if root.device is not None and st.st_dev != root.device and is_empty(root.path):
        return UNMOUNTED
    return None


def is_empty(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return next(it, None) is None
    except OSError:
        return False


def missing_roots(library: Library) -> list[MissingRoot]:
    """The library's roots that are not there now (searches leave their images out)."""
    found = []
    for root in library.roots():
        if root.kind == "root" and (reason := absence(root)) is not None:
            found.append(MissingRoot(root, reason))
    return found
