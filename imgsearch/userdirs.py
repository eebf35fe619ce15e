"""Where imgsearch keeps a user's files: the per-user config, data and cache folders.

platformdirs answers this on every platform. On Linux its answer is the XDG rule, which is
read here instead: platformdirs' import brings tempfile, shutil, bz2 and lzma into every
command (~6.6 ms alone; with the export-only imports made lazy, ~5 ms of CPU of a ~0.3 s cold
`imgsearch query`, benchmarks/ONNX.md). `tests/test_userdirs.py` checks that both give the
same folders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "imgsearch"
# kind -> (the XDG variable, its default): the XDG Base Directory specification's
_XDG = {
    "config": ("XDG_CONFIG_HOME", "~/.config"),
    "data": ("XDG_DATA_HOME", "~/.local/share"),
    "cache": ("XDG_CACHE_HOME", "~/.cache"),
}


def user_dir(kind: str) -> Path:
    """imgsearch's per-user folder of `kind` ("config", "data" or "cache"); not created here."""
    if kind not in _XDG:
        raise ValueError(f"unknown user folder {kind!r}; expected one of {', '.join(_XDG)}")
    if sys.platform.startswith("linux"):
        var, default = _XDG[kind]
        base = os.environ.get(var, "")
        if not os.path.isabs(base):  # unset, empty or relative: the spec says ignore it
            base = os.path.expanduser(default)
        return Path(base) / APP_NAME
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_path")(APP_NAME))
