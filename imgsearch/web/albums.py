"""Albums in the web UI: the list, one album's photos, and "add the selection as like / unlike".

Albums are `clip.albumstore`'s (the `imgsearch album` commands): the web adds no album logic.
The mutating views, `add` and `remove`, are POSTs guarded by `security.check_post`; they take
library ids, never paths, and write under the library's write lock without waiting for an
`index` run.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from imgsearch.errors import ImgsearchError
from imgsearch.paths import display
from imgsearch.web import security
from imgsearch.web.browse import forget_facets
from imgsearch.web.views import _web, render, thumb_url

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from imgsearch.clip.albumstore import Album
    from imgsearch.web.app import Web

MAX_IDS = 1000  # photos one request may add
MAX_NAME = 100
MAX_BODY = 256 * 1024
MEMBERS_SHOWN = 500  # an album page's grid (the .json has them all)


def album_url(name: str) -> str:
    return "/albums/" + quote(name, safe="")


def album_row(a: Album) -> dict[str, Any]:
    """`imgsearch album list --json`'s keys plus the page and the search of the album."""
    from imgsearch.web.browse import filter_word

    word = filter_word("album", a.name)
    return {
        "name": a.name,
        "text": a.text,
        "method": a.method,
        "like": len(a.positives),
        "unlike": len(a.negatives),
        "photos": a.members,
        "url": album_url(a.name),
        "search": "/?" + urlencode({"q": word}) if word else None,
    }


def albums_context(web: Web, request: Request) -> dict[str, Any]:
    from imgsearch.clip import albumstore

    rows = [album_row(a) for a in albumstore.list_albums(web.searcher.library)]
    context: dict[str, Any] = {"albums": rows}
    if not rows:
        context["empty"] = (
            "No albums yet: select photos in a search and add them to a new album, "
            "or run  imgsearch album create NAME --like PHOTO"
        )
    return context


def album_context(web: Web, name: str) -> dict[str, Any]:
    """One album: its definition, examples and member photos, best first (hit-shaped)."""
    from imgsearch.clip import albumstore

    library = web.searcher.library
    with library.reading():
        try:
            album = albumstore.info(library, name)
        except ImgsearchError as exc:
            raise security.Refused(404, str(exc)) from exc
        members = albumstore.members(library, name)
        example_paths = [*album.positives, *album.negatives]
        known = library.known_files(paths=example_paths)
        shown_ids = [i for i, _, _ in members[:MEMBERS_SHOWN]]
        details = library.details([*shown_ids, *(k.id for k in known.values())])
    hits = []
    for rank, (image_id, path, score) in enumerate(members, 1):
        image = details.get(image_id)
        hits.append(
            {
                "id": image_id,
                "path": path,
                "score": score,
                "rank": rank,
                "name": display(os.path.basename(path)),
                "photo": f"/photo/{image_id}",
                "thumb": thumb_url(image, 256) if image else None,
                "width": image.width if image else None,
                "height": image.height if image else None,
            }
        )
    context = album_row(album)
    context.update(album=album.name, examples={"like": album.positives, "unlike": album.negatives})
    context["example_photos"] = []
    for path in example_paths:
        image = details.get(known[path].id) if path in known else None
        context["example_photos"].append(
            {
                "path": path,
                "as": "like" if path in album.positives else "unlike",
                "id": image.id if image else None,
                "name": display(os.path.basename(path)),
                "photo": f"/photo/{image.id}" if image else None,
                "thumb": thumb_url(image, 256) if image else None,
            }
        )
    context["hits"] = hits
    context["shown"] = min(len(hits), MEMBERS_SHOWN)
    if not hits:
        context["empty"] = f"No photo of the library scores into album {name!r} yet."
    return context


async def albums(request: Request) -> Response:
    fmt = "json" if request.url.path.endswith(".json") else "html"
    context = await run_in_threadpool(albums_context, _web(request), request)
    return render(request, "albums.html", context, fmt)


async def album(request: Request) -> Response:
    fmt = "json" if request.url.path.endswith(".json") else "html"
    name = request.path_params["name"]
    context = await run_in_threadpool(album_context, _web(request), name)
    return render(request, "album.html", context, fmt)


# ---- add to an album (POST) -------------------------------------------------------------------
def _read_add(body: bytes, *, removing: bool = False) -> tuple[str, list[int], bool]:
    """The JSON body {"album": NAME, "ids": [ID, ...], "as": "like" | "unlike"}, checked."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ImgsearchError('send JSON: {"album": NAME, "ids": [ID, ...], "as": "like"}') from None
    if not isinstance(data, dict):
        raise ImgsearchError('send JSON: {"album": NAME, "ids": [ID, ...], "as": "like"}')
    name, ids, role = data.get("album"), data.get("ids"), data.get("as", "like")
    if not isinstance(name, str) or not name.strip():
        raise ImgsearchError("give the album a name")
    name = name.strip()
    if len(name) > MAX_NAME or "/" in name or any(ord(c) < 32 for c in name):
        raise ImgsearchError(
            f"album name {name[:MAX_NAME]!r} must be at most {MAX_NAME} characters, "
            f"without '/' or control characters"
        )
    if (
        not isinstance(ids, list)
        or not ids
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise ImgsearchError('"ids" must be a non-empty list of photo ids')
    if len(ids) > MAX_IDS:
        raise ImgsearchError(f"at most {MAX_IDS} photos at a time, got {len(ids)}")
    if role not in ("like", "unlike") and not removing:
        raise ImgsearchError(f'"as" must be "like" or "unlike", not {role!r}')
    return name, list(dict.fromkeys(ids)), role == "like"


def add_examples(web: Web, name: str, ids: list[int], positive: bool) -> dict[str, Any]:
    """albumstore.create (a new album, like examples) or albumstore.add, by library id."""
    from imgsearch.clip import albumstore
    from imgsearch.clip.store import rows

    library = web.searcher.library
    details = library.details(ids)
    missing = [i for i in ids if i not in details]
    if missing:
        raise security.Refused(404, f"no image with id {missing[0]} in the library")
    paths = [details[i].path for i in ids]
    exists = bool(rows(library, "SELECT 1 FROM albums WHERE name = ?", (name,)))
    if not exists and not positive:
        raise ImgsearchError(
            f"album {name!r} does not exist yet; start it with photos that belong (add as like)"
        )
    with web.lock, library.write_lock(wait=False):  # an index run holds it: refuse, not hang
        if exists:
            made = albumstore.add(library, name, paths, positive=positive)
        else:
            made = albumstore.create(library, name, like=paths)
    return {**album_row(made), "created": not exists, "added": len(paths)}


def remove_examples(web: Web, name: str, ids: list[int]) -> dict[str, Any]:
    """albumstore.remove: photos (by library id) stop being examples of the album."""
    from imgsearch.clip import albumstore

    library = web.searcher.library
    details = library.details(ids)
    missing = [i for i in ids if i not in details]
    if missing:
        raise security.Refused(404, f"no image with id {missing[0]} in the library")
    paths = [details[i].path for i in ids]
    with web.lock, library.write_lock(wait=False):
        try:
            album = albumstore.info(library, name)
            if not album.text and set(album.positives) <= set(paths):
                raise ImgsearchError(
                    f"album {name!r} needs at least one like example; add another first, or "
                    f"delete the album with  imgsearch album delete {name}"
                )
            made = albumstore.remove(library, name, paths)
        except ImgsearchError as exc:
            if "no album" in str(exc):
                raise security.Refused(404, str(exc)) from exc
            raise
    return {**album_row(made), "removed": len(ids)}


async def add(request: Request) -> Response:
    """POST /api/albums/add: the selection as like or unlike examples of an album."""
    return await _edit(request, removing=False)


async def remove(request: Request) -> Response:
    """POST /api/albums/remove: photos that should no longer be examples of an album."""
    return await _edit(request, removing=True)


async def _edit(request: Request, *, removing: bool) -> Response:
    from imgsearch.errors import LibraryBusyError

    web = _web(request)
    security.check_post(request, web.token, web.allowed_hosts)
    declared = request.headers.get("content-length", "")
    body = b"" if declared.isdigit() and int(declared) > MAX_BODY else await request.body()
    if len(body) > MAX_BODY or (declared.isdigit() and int(declared) > MAX_BODY):
        raise security.Refused(413, f"request larger than {MAX_BODY // 1024} KiB")
    name, ids, positive = _read_add(body, removing=removing)
    try:
        if removing:
            result = await run_in_threadpool(remove_examples, web, name, ids)
        else:
            result = await run_in_threadpool(add_examples, web, name, ids, positive)
    except LibraryBusyError as exc:
        raise security.Refused(409, str(exc)) from exc
    forget_facets(web)  # the panel's album counts changed
    return JSONResponse(result)
