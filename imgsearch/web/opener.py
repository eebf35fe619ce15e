"""Open in file manager: show a file in the OS file manager (xdg-open, open -R, explorer)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from imgsearch.errors import ImgsearchError

Opener = Callable[[str], None]  # path of a checked library file -> shown; raises ImgsearchError


def command(path: str, platform: str = sys.platform) -> list[str]:
    """The argv that reveals `path`: selected where the OS can, else its folder opened."""
    if platform == "darwin":
        return ["open", "-R", path]
    if platform.startswith("win"):
        return ["explorer", f"/select,{path}"]
    return ["xdg-open", os.path.dirname(path) or "."]  # the freedesktop way has no "select"


def reveal(path: str) -> None:
    """Run the OS command without a shell and without waiting for the file manager."""
    argv = command(path)
    try:
        subprocess.Popen(  # noqa: S603 - fixed argv, the path is a checked library file
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise ImgsearchError(
            f"cannot open a file manager: {argv[0]} failed ({exc.strerror or exc}); "
            f"copy the path instead"
        ) from exc
