"""Library-wide pages: the filter panel from the facets, duplicates, tags (HTML or `.json`).

Each is a context built from the library feature that owns the data (`Searcher.facets`,
`duplicates.library_groups`, `clip.tags.counts`, `clip.albumstore`); nothing is computed twice.
A facet value becomes the query word its filter takes, so clicking it is the same as typing it.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse

from imgsearch.errors import ImgsearchError
from imgsearch.paths import display, json_fields
from imgsearch.web.views import render, thumb_url

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from imgsearch.web.app import Web

FACET_SHOWN = 10  # values per facet in the panel before "more"
FACETS_TTL_S = 30.0  # facets may lag a tagging run or moved files by this long
# facet of Searcher.facets() -> (filter key, heading)
PANEL = (
    ("years", "year", "Year"),
    ("cameras", "camera", "Camera"),
    ("folders", "in", "Folder"),
    ("file_types", "ext", "File type"),
)
KIND_HELP = {
    "exact": "byte-identical files",
    "near": "resized, re-encoded, cropped or rotated copies",
    "similar": "burst shots: same camera within seconds",
}


# ---- query words ------------------------------------------------------------------------------
def filter_word(key: str, value: str) -> str | None:
    """The word that types filter `key` with one `value` (quoted if it holds a space), or None
    when the query language cannot say it (a `|` would split it, or both quote marks)."""
    if "|" in value or not value.strip():
        return None
    if not re.search(r"[\s\"']", value):
        return f"{key}:{value}"
    for mark in "\"'":
        if mark not in value:
            return f"{key}:{mark}{value}{mark}"
    return None


def query_words(text: str) -> list[tuple[str, str]]:
    """(word as typed back, word as parsed) for each word of `text`."""
    from imgsearch.query import split_words

    words = split_words(text)
    out = []
    for word, quoted in zip(words.words, words.quoted):
        if quoted:
            mark = "'" if '"' in word else '"'
            out.append((f"{mark}{word}{mark}", word))
        elif m := re.match(r"^(-?[a-z]+):(.*\s.*)$", word, re.S):
            out.append((filter_word(m.group(1), m.group(2)) or word, word))
        else:
            out.append((word, word))
    return out


def without(text: str, flt: str) -> str:
    """`text` without the filter word `flt` (str(Filter)): what removing a chip searches."""
    return " ".join(typed for typed, parsed in query_words(text) if parsed != flt)


def _present(text: str) -> set[str]:
    from imgsearch.query import QueryError, parse_text

    try:
        return {str(f) for f in parse_text(text).filters} if text else set()
    except QueryError:
        return set()


def tag_names(rows: list[dict]) -> list[tuple[str, dict]]:
    """(what tag: takes, row) for `clip.tags.counts` rows: the label, or set/label when two
    sets share it (tag:label would match both)."""
    labels = [r["tag"] for r in rows]
    shared = {t for t in labels if labels.count(t) > 1}
    return [(f"{r['set']}/{r['tag']}" if r["tag"] in shared else r["tag"], r) for r in rows]


# ---- the filter panel -------------------------------------------------------------------------
def library_facets(web: Web) -> tuple[dict[str, list[tuple[str, int]]], list[dict], list[Any]]:
    """`Searcher.facets()`, tag counts and albums, read again when the library's generation
    changes, an album is edited here, or after FACETS_TTL_S (a scan costs ~1 s at 100k photos)."""
    from imgsearch.clip import albumstore
    from imgsearch.clip import tags as tags_mod

    library = web.searcher.library
    generation = library.generation()
    found = web.facets.find("facets")
    if found and found[0] == generation and time.monotonic() - found[1] < FACETS_TTL_S:
        return found[2]
    data = (web.searcher.facets(), tags_mod.counts(library), albumstore.list_albums(library))
    web.facets.put("facets", (generation, time.monotonic(), data))
    return data


def forget_facets(web: Web) -> None:
    with web.facets.lock:
        web.facets.clear()


def facets_context(web: Web, request: Request) -> dict[str, Any]:
    """Every facet's values with counts, each with the URL that adds its filter to the query
    (or removes it, when the query has it already)."""
    params = request.query_params
    text = params.get("q", "").strip()
    keep = {k: params[k] for k in ("similar", "example") if params.get(k)}
    present = _present(text)
    raw, tag_rows, album_rows = library_facets(web)

    def value(key: str, shown: str, count: int, raw_value: str | None = None) -> dict[str, Any]:
        word = filter_word(key, raw_value if raw_value is not None else shown)
        item: dict[str, Any] = {"value": shown, "count": count, "filter": word, "url": None}
        if word is not None:
            parsed = query_words(word)[0][1]
            item["active"] = parsed in present
            new = without(text, parsed) if item["active"] else f"{text} {word}".strip()
            item["url"] = "/?" + urlencode({"q": new, **keep})
        return item

    groups = []
    for name, key, heading in PANEL:
        values = [value(key, display(v) if key == "in" else v, n, v) for v, n in raw[name]]
        if key == "in":  # the panel is narrow: the folder's last two names (the title has all)
            for item in values:
                item["label"] = os.sep.join(item["value"].rstrip(os.sep).split(os.sep)[-2:])
        groups.append({"name": name, "key": key, "heading": heading, "values": values})
    tags = [value("tag", name, r["photos"]) for name, r in tag_names(tag_rows)]
    groups.append({"name": "tags", "key": "tag", "heading": "Tags", "values": tags})
    albums = [value("album", a.name, a.members) for a in album_rows]
    groups.append({"name": "albums", "key": "album", "heading": "Albums", "values": albums})
    months = sorted(v for v, _ in raw["months"])
    return {
        "q": text,
        "facets": groups,
        "dates": {"first": months[0], "last": months[-1]} if months else None,
        "shown": FACET_SHOWN,
        **keep,
    }


async def facets(request: Request) -> Response:
    from imgsearch.web.views import _web

    fmt = "json" if request.url.path.endswith(".json") else "html"
    if fmt == "html" and request.query_params.get("fragment"):
        fmt = "fragment"
    context = await run_in_threadpool(facets_context, _web(request), request)
    return render(request, "facets.html", context, fmt, fragment="_facets.html")


# ---- duplicates -------------------------------------------------------------------------------
def duplicates_context(web: Web, request: Request) -> dict[str, Any]:
    """`imgsearch duplicates --json` groups with thumbnails, keeper marks and export links."""
    from imgsearch.duplicates import KINDS, library_groups

    kind = request.query_params.get("kind", "near")
    if kind not in KINDS:
        raise ImgsearchError(f"kind={kind!r}: use one of {', '.join(KINDS)}")
    library = web.searcher.library
    with library.reading():  # the groups and their thumbnails: one committed state
        groups = library_groups(library, kind)
        details = library.details(m.id for g in groups for m in g.members)
    out = []
    for n, g in enumerate(groups, 1):
        data = g.to_dict()
        data["number"] = n
        for m in data["members"]:
            image = details.get(m["id"])
            m.update(json_fields(m["path"]))
            m.update(
                keeper=m["id"] == g.keeper,
                name=display(os.path.basename(m["path"])),
                photo=f"/photo/{m['id']}",
                thumb=thumb_url(image, 256) if image else None,
            )
        out.append(data)
    extra = [m["path"] for g in out for m in g["members"] if not m["keeper"]]
    return {
        "kind": kind,
        "kinds": [
            {"kind": k, "help": KIND_HELP.get(k, ""), "url": f"/duplicates?kind={k}"} for k in KINDS
        ],
        "groups": out,
        "photos": sum(len(g["members"]) for g in out),
        "not_keepers": len(extra),
        "export_txt": f"/duplicates.txt?kind={kind}",
        "export_json": f"/duplicates.json?kind={kind}&download=1",
        "note": "Nothing is deleted here: export the list and review it.",
    }


async def duplicates(request: Request) -> Response:
    from imgsearch.web.views import _web

    context = await run_in_threadpool(duplicates_context, _web(request), request)
    path = request.url.path
    name = f"imgsearch-duplicates-{context['kind']}"
    if path.endswith(".txt"):  # the photos that are not keepers, one path a line
        lines = [m["path"] for g in context["groups"] for m in g["members"] if not m["keeper"]]
        return PlainTextResponse(
            "".join(f"{p}\n" for p in lines),
            headers={"content-disposition": f'attachment; filename="{name}.txt"'},
        )
    if path.endswith(".json"):
        headers = {}
        if request.query_params.get("download"):
            headers["content-disposition"] = f'attachment; filename="{name}.json"'
        return JSONResponse(context, headers=headers)
    return render(request, "duplicates.html", context, "html")


# ---- tags -------------------------------------------------------------------------------------
def tags_context(web: Web, request: Request) -> dict[str, Any]:
    """`imgsearch tags`: every tag with its photo count and the search that shows them."""
    from imgsearch.clip import tags as tags_mod

    out = []
    for name, r in tag_names(tags_mod.counts(web.searcher.library)):
        word = filter_word("tag", name)
        out.append({**r, "search": "/?" + urlencode({"q": word}) if word else None})
    context: dict[str, Any] = {"tags": out}
    if not out:
        context["empty"] = "No tags yet: run  imgsearch tag --labels everyday  to tag the library."
    return context


async def tags(request: Request) -> Response:
    from imgsearch.web.views import _web

    fmt = "json" if request.url.path.endswith(".json") else "html"
    context = await run_in_threadpool(tags_context, _web(request), request)
    return render(request, "tags.html", context, fmt)
