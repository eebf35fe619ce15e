"""imgsearch: semantic image search over photo folders (CLIP + FAISS + SQLite).

`from imgsearch import Searcher` is the Python entry point; it is imported lazily so that
`import imgsearch` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Hit", "ImgsearchError", "Searcher", "Term"]

if TYPE_CHECKING:
    from imgsearch.errors import ImgsearchError
    from imgsearch.search import Hit, Searcher, Term


def __getattr__(name: str) -> Any:
    if name in ("Searcher", "Hit", "Term"):
        from imgsearch import search

        return getattr(search, name)
    if name == "ImgsearchError":
        from imgsearch.errors import ImgsearchError

        return ImgsearchError
    raise AttributeError(f"module 'imgsearch' has no attribute {name!r}")
