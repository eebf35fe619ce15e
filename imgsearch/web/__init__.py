"""The local web UI and JSON API of `imgsearch serve` (Starlette, Jinja2, plain JS modules).

app.py       create_app(searcher_or_library, settings) -> Starlette; errors; headers
views.py     one view per page; its context renders as HTML, .json or a fragment
security.py  files by id under indexed roots, Host allow-list, POST token + Origin
opener.py    "open in file manager"
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See imgsearch.web.app.create_app (imported here on first use: Starlette is not cheap)."""
    from imgsearch.web.app import create_app as make

    return make(*args, **kwargs)
