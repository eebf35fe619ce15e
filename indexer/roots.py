"""Which folders a run covers: the library's roots, the paths given, and the roots that are gone.

A library records the roots it was asked to index. `imgsearch index` with no path re-indexes
them; a path inside a root re-indexes that part of it; a root that is not there (renamed,
deleted, an unplugged drive) is reported and its images are kept, never silently dropped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from imgsearch.errors import ImgsearchError
from imgsearch.folders import MissingRoot, absence, is_empty
from imgsearch.library import Library, Root
from imgsearch.paths import canonical, display, is_inside


@dataclass(frozen=True)
class Target:
    """One thing a run scans: a whole root, a folder inside one, or a single file."""

    path: str  # canonical
    root_id: int | None  # the registered root that owns it (None: new root, or a loose file)
    is_root: bool  # a root scanned whole: its rows not seen are deletions
    is_dir: bool
    device: int | None = None


def owner_of(path: str, roots: Sequence[Root]) -> Root | None:
    """The innermost registered root holding `path` (canonical)."""
    holding = [r for r in roots if r.kind == "root" and is_inside(path, r.path)]
    return max(holding, key=lambda r: len(r.path), default=None)


def plan_targets(library: Library, given: Sequence[str]) -> tuple[list[Target], list[MissingRoot]]:
    """The targets of a run over `given` paths (none: every root), and the roots it cannot
    scan. A given path that does not exist and is no root is an error, raised before anything
    is written."""
    roots = library.roots()
    if not given:
        targets, missing = [], []
        for root in roots:
            if root.kind != "root":
                continue
            reason = absence(root)
            if reason is not None:
                missing.append(MissingRoot(root, reason))
            else:
                device = os.stat(root.path).st_dev
                targets.append(Target(root.path, root.id, True, True, device))
        return targets, missing
    targets, missing = [], []
    by_path = {r.path: r for r in roots if r.kind == "root"}
    for raw in given:
        path = canonical(raw)
        root = by_path.get(path)
        if root is not None and (reason := absence(root)) is not None:
            missing.append(MissingRoot(root, reason))
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImgsearchError(f"{display(raw)}: no such file or folder") from None
        except OSError as exc:
            raise ImgsearchError(f"{display(raw)}: {exc.strerror or exc}") from exc
        is_dir = stat.S_ISDIR(st.st_mode)
        owner = owner_of(path, roots)
        if is_dir and (owner is None or owner.path == path):
            targets.append(Target(path, owner.id if owner else None, True, True, st.st_dev))
        else:
            targets.append(Target(path, owner.id if owner else None, False, is_dir, st.st_dev))
    return targets, missing


def check_location(library: str, folders: Sequence[str], *, allowed: bool) -> None:
    """Refuse a library inside the photos it indexes, or photos inside the library: the
    database and the model files would land among the photos (or be indexed as photos)."""
    if allowed:
        return
    home = canonical(library)
    for raw in folders:
        folder = canonical(raw)
        if not os.path.isdir(folder):
            continue
        if is_inside(home, folder) or is_inside(folder, home):
            raise ImgsearchError(
                f"the library {display(home)} would be inside the photo folder "
                f"{display(folder)} (or hold it): keep the library elsewhere with "
                f"--library FOLDER, or pass --allow-nested to keep it there (it is never indexed)"
            )


def check_new_library_folder(folder: str, *, allowed: bool) -> None:
    """Refuse to create a library in a folder that already holds other files (a photo folder
    given as --library, say), unless asked explicitly."""
    path = canonical(folder)
    if allowed or not os.path.isdir(path) or os.path.exists(os.path.join(path, "library.db")):
        return
    if not is_empty(path):
        raise ImgsearchError(
            f"{display(path)} is not an imgsearch library and is not empty; give --library a "
            f"new or empty folder (or pass --allow-nested to create the library there anyway)"
        )
