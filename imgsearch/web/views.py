"""One view per page: each builds a context that renders as HTML, as `.json`, or as a fragment.

The JSON is the contract (hits carry the CLI's `--json` keys plus id and URLs); the HTML
templates get the same dict. Searcher calls run in a worker thread under `Web.lock`.

The search page and the photo page live here; the library-wide pages in browse.py (the filter
panel from `Searcher.facets()`, duplicates, tags), albums and "add to album" (a POST guarded by
`security.check_post`) in albums.py, the photo page's explain heatmap in heatmap.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from imgsearch.errors import ImgsearchError
from imgsearch.paths import display, json_fields
from imgsearch.web import security

if TYPE_CHECKING:
    from starlette.requests import Request

    from imgsearch.library import ImageDetail
    from imgsearch.query import Query
    from imgsearch.search import Hit, SearchResult
    from imgsearch.web.app import Web

PAGE_SIZE = 48
MAX_PAGE_SIZE = 200
IMMUTABLE = "public, max-age=31536000, immutable"
HTML_ONLY = ("next_fragment", "panel")  # what the page needs and the JSON contract does not promise


def _web(request: Request) -> Web:
    return request.app.state.web


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    fmt: str,
    fragment: str = "_hits.html",
) -> Response:
    """The one place a context becomes a response: JSON, a whole page, or a partial."""
    if fmt == "json":
        return JSONResponse({k: v for k, v in context.items() if k not in HTML_ONLY})
    if fmt == "fragment":
        template = fragment
    return _web(request).templates.TemplateResponse(request, template, {"c": context})


# ---- queries ----------------------------------------------------------------------------------
def parse_query(request: Request, size: int) -> Query:
    """The request's `q` (the CLI's query language: terms, filters), cutoff, page size, cursor.

    Image terms (`@FILE`) are refused: a client must not make the server read a path; examples
    come as uploads or "more like this".
    """
    from imgsearch.query import Query, parse_text

    params = request.query_params
    text = params.get("q", "").strip()
    options: dict[str, Any] = {"k": size, "cursor": params.get("cursor") or None}
    if params.get("cutoff"):
        options["cutoff"] = params["cutoff"]
    query = parse_text(text, **options) if text else Query(**options)
    if any(t.kind == "image" for t in query.terms):
        raise ImgsearchError(
            "@FILE image terms are not taken from the web; drop or paste the image instead"
        )
    return query


def hit_json(hit: Hit, rank: int, image: ImageDetail | None) -> dict[str, Any]:
    """A CLI `--json` hit plus what a page needs: rank, name and content-keyed URLs."""
    data = hit.to_dict()
    data.update(id=hit.id, rank=rank, photo=f"/photo/{hit.id}", file=f"/file/{hit.id}")
    data["thumb"] = thumb_url(image, 256) if image else None
    data["name"] = display(os.path.basename(hit.path))
    return data


def thumb_url(image: ImageDetail, px: int) -> str:
    from imgsearch.thumbs import content_key

    return f"/thumb/{image.id}/{px}?v={content_key(image, px)}"


def _run(web: Web, request: Request, query: Query) -> tuple[SearchResult, dict[str, Any]]:
    """Searcher.search for the request: a typed query, "more like this", or an upload."""
    params = request.query_params
    s = web.searcher
    if example := params.get("example"):
        vector = web.example_vector(example)
        if vector is None:
            raise security.Refused(404, "that example image has expired; drop it again")
        _only_filters(query, "an example picture")
        return s.nearest(vector, query), {"example": example}
    if similar := params.get("similar"):
        try:
            image_id = int(similar)
        except ValueError:
            raise ImgsearchError(f"similar={similar!r} is not an image id") from None
        image = s.library.detail(image_id)
        if image is None:
            raise security.Refused(404, f"no image with id {image_id} in the library")
        _only_filters(query, "more like this")
        return s.similar_to(image.path, query), {"similar": image_id}
    return s.search(query), {}


def _only_filters(query: Query, what: str) -> None:
    if query.terms:
        raise ImgsearchError(f"{what} takes filters only in q (e.g. after:2021), not search terms")


def _page_size(request: Request) -> int:
    raw = request.query_params.get("size", str(PAGE_SIZE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ImgsearchError(f"size must be a number from 1 to {MAX_PAGE_SIZE}, got {raw!r}")
    return int(raw)


def search_context(web: Web, request: Request) -> dict[str, Any]:
    """The search page: one page of hits, the cursor of the next, what the search did, or why
    there are none (SearchResult.to_dict's keys, hits with URLs, plus the page's own)."""
    from imgsearch.query import read_cursor

    params = request.query_params
    text = params.get("q", "").strip()
    context: dict[str, Any] = {"q": text, "hits": [], "offset": 0, "next_cursor": None}
    context["next_url"] = None
    if not (text or params.get("similar") or params.get("example")):
        context["empty"] = "Type what you are looking for, or drop a picture here."
        context["library_count"] = web.searcher.library.count()
        return context
    size = _page_size(request)
    query = parse_query(request, size)
    after = read_cursor(query)
    offset = after[2] if after else 0
    library = web.searcher.library
    with web.lock, library.reading():  # hits and their metadata: one committed state
        result, asked = _run(web, request, query)
        details = library.details(h.id for h in result.hits)
    context.update(result.to_dict(), **asked, offset=offset, query=query.to_json())
    context["hits"] = [
        hit_json(h, offset + i + 1, details.get(h.id)) for i, h in enumerate(result.hits)
    ]
    context["chips"] = [_chip(text, str(f)) for f in query.filters]
    if result.cutoff is not None:
        context["cutoff_text"] = result.cutoff.describe()
        context["show_more_url"] = "/?" + urlencode({**_asked(params), "cutoff": "none"})
    if result.next_cursor:
        more = {**_asked(params), "cursor": result.next_cursor}
        if "size" in params:
            more["size"] = size
        context["next_url"] = "/search.json?" + urlencode(more)
        context["next_fragment"] = "/?" + urlencode({**more, "fragment": 1})
    if not context["hits"] and offset == 0:
        context["empty"] = _why_empty(web, query, result)
    return context


def _asked(params: Any) -> dict[str, str]:
    """The parameters that define the ranked list (not its page)."""
    keys = ("q", "similar", "example", "cutoff")
    return {k: params[k] for k in keys if params.get(k)}


def _chip(text: str, flt: str) -> dict[str, str]:
    """A parsed filter as a chip; removing it is the same query without that word."""
    from imgsearch.web.browse import without

    return {"filter": flt, "remove_url": "/?" + urlencode({"q": without(text, flt)})}


def _why_empty(web: Web, query: Query, result: SearchResult) -> str:
    count = web.searcher.library.count()
    if count == 0:
        return "The library has no photos yet: run  imgsearch index FOLDER  first."
    if result.matched == 0:
        shown = " ".join(str(f) for f in query.filters)
        return f"No photo of {count} matches the filters {shown}; remove one to see more."
    if result.cutoff is not None and result.cutoff.kept == 0:
        considered = result.cutoff.considered
        return f"The cutoff kept none of the {considered} best; show more to see them."
    floor = web.settings.min_score if query.min_score is None else query.min_score
    if floor > -1:
        return f"No photo of {count} scored above min_score {floor}; lower it to see more."
    return f"No photo of {count} matched."


async def search(request: Request) -> Response:
    web = _web(request)
    fmt = "json" if request.url.path.endswith(".json") else "html"
    if fmt == "html" and request.query_params.get("fragment"):
        fmt = "fragment"
    context = await run_in_threadpool(search_context, web, request)
    if fmt == "html":  # the filter panel loads after the grid: facets cost a scan of the library
        keep = {k: v for k, v in _asked(request.query_params).items() if k != "cutoff"}
        context["panel"] = "/facets?" + urlencode({**keep, "fragment": 1})
    return render(request, "search.html", context, fmt)


# ---- one photo --------------------------------------------------------------------------------
def photo_context(web: Web, image_id: int, q: str = "") -> dict[str, Any]:
    """One photo: its metadata, tags and albums, and (given the search's `q`) its heatmap."""
    image = web.searcher.library.detail(image_id)
    if image is None:
        raise security.Refused(404, f"no image with id {image_id} in the library")
    try:
        security.library_file(web.searcher.library, image_id)
        problem = None
    except security.Refused as exc:
        problem = exc.message
    data = dataclasses.asdict(image)
    data.update(json_fields(image.path))  # an undecodable name: escaped, exact bytes in base64
    data.update(
        name=display(os.path.basename(image.path)),
        folder=display(os.path.dirname(image.path)),
        thumb=thumb_url(image, 256),
        preview=thumb_url(image, 1440),
        file=f"/file/{image.id}",
        similar=f"/?similar={image.id}",
        similar_json=f"/search.json?similar={image.id}",
        available=problem is None,
        problem=problem,
    )
    from imgsearch.clip import tags as tags_mod  # issue 11: `imgsearch tag` results
    from imgsearch.web.browse import filter_word

    data["tags"] = [
        {**t, "search": "/?" + urlencode({"q": filter_word("tag", t["tag"]) or t["tag"]})}
        for t in tags_mod.tags_of(web.searcher.library, image_id)
    ]
    from imgsearch.clip.albumstore import albums_of
    from imgsearch.web.albums import album_url

    data["albums"] = [
        {**a, "url": album_url(a["album"])} for a in albums_of(web.searcher.library, image_id)
    ]
    from imgsearch.web.heatmap import explain_links

    data["q"] = q
    data["explain"] = explain_links(image.id, q) if problem is None else None
    return data


async def photo(request: Request) -> Response:
    fmt = "json" if request.url.path.endswith(".json") else "html"
    q = request.query_params.get("q", "").strip()
    context = await run_in_threadpool(photo_context, _web(request), request.path_params["id"], q)
    return render(request, "photo.html", context, fmt)


# ---- files ------------------------------------------------------------------------------------
def _checked(web: Web, image_id: int) -> ImageDetail:
    return security.library_file(web.searcher.library, image_id)


async def thumb(request: Request) -> Response:
    """A thumbnail; immutable at its content-keyed URL, which any other URL redirects to."""
    from imgsearch.thumbs import SIZES, ThumbnailError, content_key

    web = _web(request)
    px = request.path_params["px"]
    if px not in SIZES:
        raise security.Refused(404, f"thumbnail size must be one of {', '.join(map(str, SIZES))}")
    image = await run_in_threadpool(_checked, web, request.path_params["id"])
    key = content_key(image, px)
    if request.query_params.get("v") != key:
        return RedirectResponse(thumb_url(image, px), 307, headers={"cache-control": "no-store"})
    try:
        path = await run_in_threadpool(web.thumbs.file, image, px)
    except ThumbnailError as exc:
        raise security.Refused(422, str(exc)) from exc
    return FileResponse(path, media_type="image/webp", headers={"cache-control": IMMUTABLE})


async def original(request: Request) -> Response:
    web = _web(request)
    image = await run_in_threadpool(_checked, web, request.path_params["id"])
    return FileResponse(
        image.path,
        filename=display(os.path.basename(image.path)),
        content_disposition_type="inline",
        headers={"cache-control": "private, no-cache"},
    )


# ---- POST endpoints (token + Origin) ----------------------------------------------------------
async def open_in_file_manager(request: Request) -> Response:
    web = _web(request)
    security.check_post(request, web.token, web.allowed_hosts)
    image = await run_in_threadpool(_checked, web, request.path_params["id"])
    await run_in_threadpool(web.opener, image.path)
    return JSONResponse({"opened": image.path, "id": image.id})


async def _capped_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    too_big = security.Refused(413, f"upload larger than upload_max_mb ({cap // 2**20} MB)")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap + 64 * 1024:  # multipart framing on top of the file
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload_bytes(request: Request, cap: int) -> bytes:
    """The image of a POST: a raw body, or the first file of a multipart form."""
    body = await _capped_body(request, cap)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        data = body
    else:
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        async def stream() -> Any:
            yield body

        try:
            form = await MultiPartParser(request.headers, stream(), max_part_size=cap).parse()
        except MultiPartException as exc:
            raise ImgsearchError(f"cannot read the upload: {exc.message}") from exc
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise ImgsearchError("the form has no file; send the image as field 'image'")
        data = await files[0].read()
    if len(data) > cap:
        raise security.Refused(413, f"upload larger than upload_max_mb ({cap // 2**20} MB)")
    if not data:
        raise ImgsearchError("the upload is empty; send an image file")
    return data


def _embed_upload(web: Web, data: bytes) -> str:
    """Decode an upload exactly like an indexed file (same hostile-file checks), keep its vector."""
    key = hashlib.sha256(data).hexdigest()[:20]
    if web.examples.find(key) is not None:
        return key
    with tempfile.TemporaryDirectory(prefix="imgsearch-upload-") as tmp:
        path = os.path.join(tmp, "upload")
        with open(path, "wb") as fh:
            fh.write(data)
        with web.lock:
            try:
                vector = web.searcher.embed_image(path)
            except ImgsearchError as exc:
                reason = str(exc).split(": ", 1)[-1].replace(path, "the upload")
                raise ImgsearchError(f"cannot use the upload as a query image: {reason}") from exc
    web.examples.put(key, vector)
    return key


async def example(request: Request) -> Response:
    """Query by example: POST an image, get the search that ranks by it."""
    web = _web(request)
    security.check_post(request, web.token, web.allowed_hosts)
    data = await _upload_bytes(request, web.settings.upload_max_mb * 1024 * 1024)
    key = await run_in_threadpool(_embed_upload, web, data)
    return JSONResponse(
        {"example": key, "url": f"/?example={key}", "search": f"/search.json?example={key}"}
    )


def routes() -> list[Route | Mount]:
    from starlette.staticfiles import StaticFiles

    from imgsearch.web import albums, browse, heatmap
    from imgsearch.web.app import HERE

    return [
        Route("/", search),
        Route("/search.json", search),
        Route("/photo/{id:int}.json", photo),
        Route("/photo/{id:int}", photo),
        Route("/photo/{id:int}/explain.json", heatmap.explain),
        Route("/photo/{id:int}/explain.png", heatmap.explain),
        Route("/facets", browse.facets),
        Route("/facets.json", browse.facets),
        Route("/duplicates", browse.duplicates),
        Route("/duplicates.json", browse.duplicates),
        Route("/duplicates.txt", browse.duplicates),
        Route("/tags", browse.tags),
        Route("/tags.json", browse.tags),
        Route("/albums", albums.albums),
        Route("/albums.json", albums.albums),
        Route("/albums/{name}.json", albums.album),
        Route("/albums/{name}", albums.album),
        Route("/thumb/{id:int}/{px:int}", thumb),
        Route("/file/{id:int}", original),
        Route("/api/open/{id:int}", open_in_file_manager, methods=["GET", "POST"]),
        Route("/api/example", example, methods=["GET", "POST"]),
        Route("/api/albums/add", albums.add, methods=["GET", "POST"]),
        Route("/api/albums/remove", albums.remove, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
