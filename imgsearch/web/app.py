"""The app factory: `create_app(searcher_or_library, settings) -> Starlette`, like datasette's.

Everything a request needs lives in one `Web` object on `app.state.web`: the Searcher (loaded
once, called under one lock), the thumbnail cache, the launch token, the Host allow-list, the
file-manager opener (injectable, so tests launch nothing), the query-by-example vectors and the
explain heatmaps.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgsearch.errors import ImgsearchError
from imgsearch.web import security

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from imgsearch.config import Settings
    from imgsearch.search import Searcher
    from imgsearch.thumbs import ThumbCache
    from imgsearch.web.opener import Opener

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
EXAMPLES_KEPT = 32  # query-by-example vectors remembered (an upload is embedded once)
VECTORS_KEPT = 256  # text query vectors remembered, so scrolling does not re-embed
HEATMAPS_KEPT = 16  # explain heatmaps remembered (the PNG and the JSON share one)
# Pages load nothing from elsewhere and cannot be framed; images may be blobs (drag and drop).
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class _Lru(OrderedDict):  # type: ignore[type-arg]
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)

    def find(self, key: str) -> Any:
        with self.lock:
            value = self.get(key)
            if value is not None:
                self.move_to_end(key)
            return value


@dataclass
class Web:
    """What every view shares; one per app."""

    searcher: Searcher
    settings: Settings
    thumbs: ThumbCache
    token: str
    allowed_hosts: frozenset[str]
    opener: Opener
    lock: threading.Lock = field(default_factory=threading.Lock)
    examples: _Lru = field(default_factory=lambda: _Lru(EXAMPLES_KEPT))
    vectors: _Lru = field(default_factory=lambda: _Lru(VECTORS_KEPT))
    heatmaps: _Lru = field(default_factory=lambda: _Lru(HEATMAPS_KEPT))
    facets: _Lru = field(default_factory=lambda: _Lru(1))  # browse.py: the last facets read
    templates: Any = None

    def example_vector(self, key: str) -> npt.NDArray[np.float32] | None:
        return self.examples.find(key)

    def close(self) -> None:
        self.thumbs.close()


class SecurityHeaders:
    """ASGI middleware: nosniff, same-origin referrers and the CSP on every response; no CORS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", CSP.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def wants_json(request: Request) -> bool:
    path = request.url.path
    return (
        path.endswith(".json")
        or path.startswith(("/api/", "/thumb/", "/file/"))
        or "text/html" not in request.headers.get("accept", "")
    )


def error_response(request: Request, status: int, message: str) -> Response:
    """Errors are JSON for the API and a small page for a browser; never a traceback."""
    from starlette.responses import JSONResponse

    if wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    web: Web = request.app.state.web
    return web.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "c": {}}, status_code=status
    )


def create_app(
    source: Searcher | str | os.PathLike[str],
    settings: Settings | None = None,
    *,
    bind_host: str = "127.0.0.1",
    allow_hosts: Iterable[str] = (),
    opener: Opener | None = None,
    thumbs_dir: Path | None = None,
    token: str | None = None,
) -> Starlette:
    """The web UI and JSON API over one Searcher (made from a library folder if given one)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.templating import Jinja2Templates

    from imgsearch import config as config_mod
    from imgsearch import thumbs
    from imgsearch.search import Searcher
    from imgsearch.web import opener as opener_mod
    from imgsearch.web.views import routes

    if isinstance(source, Searcher):
        searcher = source
        settings = settings or searcher.settings
    else:
        settings = settings or config_mod.resolve()
        searcher = Searcher(source, settings=settings)
    cache = thumbs.ThumbCache(
        thumbs_dir or thumbs.default_folder(searcher.library.path),
        max_bytes=settings.thumbnail_cache_mb * 1024 * 1024,
        max_pixels=settings.max_pixels,
    )
    hosts = security.allowed_hosts(bind_host, allow_hosts)
    web = Web(
        searcher=searcher,
        settings=settings,
        thumbs=cache,
        token=token or security.new_token(),
        allowed_hosts=hosts,
        opener=opener or opener_mod.reveal,
    )
    web.templates = Jinja2Templates(directory=str(HERE / "templates"))
    web.templates.env.globals.update(token=web.token, library=str(searcher.library.path))

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, security.Refused)
        return error_response(request, exc.status, exc.message)

    async def bad_input(request: Request, exc: Exception) -> Response:
        return error_response(request, 400, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(request, exc.status_code, str(exc.detail))

    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("error serving %s", request.url.path, exc_info=exc)
        return error_response(request, 500, f"internal error: {type(exc).__name__}: {exc}")

    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(security.HostGuard, allowed_hosts=hosts),
            Middleware(SecurityHeaders),
        ],
        exception_handlers={
            security.Refused: refused,
            ImgsearchError: bad_input,
            HTTPException: http_error,
            Exception: crashed,
        },
    )
    app.state.web = web
    return app
