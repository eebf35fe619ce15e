"""What keeps a local photo server from being a hole: which files, hosts and requests it accepts.

- Files are served by library id only; `library_file` is the one check of a stored path.
- `HostGuard` refuses foreign `Host` headers (DNS rebinding) before any view runs.
- `check_post` guards every mutating endpoint: POST, a same-origin `Origin`, the launch token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING

from imgsearch.library import ImageDetail, Library

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "x-imgsearch-token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class Refused(Exception):
    """A request the server will not serve: `status` and a message for the JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_token() -> str:
    """The per-launch secret embedded in every page and required by every POST."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def library_file(library: Library, image_id: int) -> ImageDetail:
    """The indexed image `image_id` with its path checked, or Refused(404).

    The path comes from the library, never from the client. It must lie inside one of the
    library's roots and not inside a folder `forget` excluded, and still be the regular file
    that was indexed: stored paths are canonical (symlinks resolved), so a path that now
    resolves elsewhere, or whose size or mtime changed, was swapped or edited since.
    """
    from imgsearch.paths import is_inside

    image = library.detail(image_id)
    if image is None:
        raise Refused(404, f"no image with id {image_id} in the library")
    stored = image.path
    roots = library.roots()
    inside = [r.path for r in roots if r.kind == "root"]
    excluded = [r.path for r in roots if r.kind == "excluded"]
    if (
        not os.path.isabs(stored)
        or os.path.normpath(stored) != stored
        or not any(is_inside(stored, root) for root in inside)
        or any(is_inside(stored, folder) for folder in excluded)
    ):
        raise Refused(404, f"image {image_id} lies outside the indexed folders")
    changed = Refused(
        404, f"{stored} changed since it was indexed; run imgsearch index to update the library"
    )
    try:
        if os.path.realpath(stored) != stored:
            raise changed
        st = os.stat(stored)
    except OSError:
        raise Refused(
            404, f"{stored} is gone from disk; run imgsearch index to update the library"
        ) from None
    if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (image.size, image.mtime_ns):
        raise changed
    return image


def check_post(request: Request, token: str, allowed_hosts: frozenset[str]) -> None:
    """A mutating request must be a POST carrying the token, from one of our own pages."""
    if request.method != "POST":
        raise Refused(405, "this endpoint takes POST only")
    origin = request.headers.get("origin")
    if origin is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or (parts.hostname or "") not in allowed_hosts:
            raise Refused(403, f"cross-origin request from {origin} refused")
    sent = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise Refused(403, f"missing or wrong {TOKEN_HEADER} header (reload the page)")


class HostGuard:
    """ASGI middleware: answer 400 to any Host header not on the allow-list (DNS rebinding)."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = ""
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    break
            if host_name(host) not in self.allowed:
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {
                        "error": f"host {host!r} is not allowed; start serve with --allow-host",
                        "status": 400,
                    },
                    status_code=400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """'example.org:8000' -> 'example.org', '[::1]:8000' -> '::1' (lower case)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the bound address (unless a wildcard) and the --allow-host names."""
    names = set(LOOPBACK_NAMES) | {host_name(h) for h in extra}
    if bind not in ("0.0.0.0", "::", ""):
        names.add(host_name(bind) if not bind.count(":") > 1 else bind.lower())
    return frozenset(names)
