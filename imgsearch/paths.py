"""File paths as the library keeps them: canonical, stored as their exact bytes, shown escaped.

Linux file names are bytes. Python hands them to us as `str` with undecodable bytes mapped to
lone surrogates (PEP 383), which SQLite cannot store as text and a terminal cannot print. So
the library stores `os.fsencode(path)` (a BLOB: lossless, and byte order for prefix ranges),
code in between passes the PEP 383 `str`, and people see `display(path)`.
"""

from __future__ import annotations

import base64
import os
import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def canonical(path: str | os.PathLike[str]) -> str:
    """The one spelling of a file or folder: absolute, `~` expanded, symlinks resolved."""
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def to_key(path: str) -> bytes:
    """The exact bytes of a path, as stored in SQLite."""
    return os.fsencode(path)


def from_key(key: bytes | str) -> str:
    """A stored path back to the `str` the os module takes (PEP 383 for undecodable bytes)."""
    return os.fsdecode(key) if isinstance(key, bytes) else key


def prefix_range(folder: str) -> tuple[bytes, bytes]:
    """[low, high) of the keys of every path strictly inside `folder` (bytes compare as memcmp)."""
    low = to_key(folder.rstrip(os.sep) + os.sep)
    return low, low[:-1] + bytes([low[-1] + 1])


def is_inside(path: str, folder: str) -> bool:
    """True when `path` is `folder` or lies below it (both canonical)."""
    folder = folder.rstrip(os.sep) or os.sep
    return path == folder or path.startswith(folder if folder == os.sep else folder + os.sep)


def is_exact(path: str) -> bool:
    """True when `display(path)` is the path itself (valid UTF-8, nothing to escape)."""
    return display(path) == path


def display(path: str) -> str:
    """A printable form: undecodable bytes as \\xNN, control characters escaped (\\n, \\x07)."""
    if path.isprintable():  # lone surrogates and control characters are not
        return path
    out = []
    for ch in path:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cs"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def json_fields(path: str) -> dict[str, str | None]:
    """`path` (escaped as `display`) and `path_bytes` (base64 of the exact bytes, or None when
    `path` already is the exact name): the documented JSON form of a path."""
    exact = is_exact(path)
    return {
        "path": display(path),
        "path_bytes": None if exact else base64.b64encode(to_key(path)).decode("ascii"),
    }
