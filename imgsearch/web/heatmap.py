"""The explain heatmap on the photo page: `Searcher.explain` for the page's query, as a PNG that
lies exactly over the preview, or as JSON (the heat on a coarse grid, its peak, its score).

The model sees a resized, centre-cropped copy of the photo; `view_box` says which part of the
photo that is, so the PNG (the photo's aspect, transparent outside that part) overlays the
preview with the same CSS, no geometry in the browser.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from imgsearch.errors import ImgsearchError
from imgsearch.web import security
from imgsearch.web.views import _web

if TYPE_CHECKING:
    from starlette.requests import Request

    from imgsearch.clip.explain import Explanation
    from imgsearch.modelspec import PreprocessSpec
    from imgsearch.web.app import Web

OVERLAY_PX = 720  # the PNG's long side (the heat itself is model-input sized)
GRID = 8  # cells per side of the JSON grid


@dataclass(frozen=True)
class Heat:
    """An explanation placed on the photo: `box` (x0, y0, x1, y1, fractions of the photo) is what
    the model saw; `inner` (pixels of the model input) the part of the input holding the photo."""

    explanation: Explanation
    box: tuple[float, float, float, float]
    inner: tuple[int, int, int, int]
    size: tuple[int, int]  # the photo's (width, height), oriented
    text: str


def explain_text(q: str) -> str:
    """The text the heatmap explains: the query's positive text terms (filters dropped)."""
    from imgsearch.query import parse_text

    query = parse_text(q)
    if any(t.kind == "image" for t in query.terms):
        raise ImgsearchError("@FILE image terms are not taken from the web")
    words = [t.value for t in query.terms if t.kind == "text" and t.weight > 0]
    if not words:
        raise ImgsearchError("explain needs a text query, e.g. ?q=a dog on a beach")
    return " ".join(words)


def explain_links(image_id: int, q: str) -> dict[str, str] | None:
    """The photo page's heatmap URLs for the search's `q`; None when it has no text to explain."""
    if not q:
        return None
    try:
        text = explain_text(q)
    except ImgsearchError:
        return None  # filters only (or a bad query): nothing to explain
    query = urlencode({"q": q})
    return {
        "query": text,
        "overlay": f"/photo/{image_id}/explain.png?{query}",
        "json": f"/photo/{image_id}/explain.json?{query}",
    }


def _axis(photo: int, new: int, out: int) -> tuple[float, float, int, int]:
    """One axis: (start, end) fractions of the photo the model sees, (start, end) in its input."""
    from imgsearch.decode import _crop_or_pad

    offset, kept, pad = _crop_or_pad(new, out)
    return offset / new, (offset + kept) / new, pad, pad + kept


def view_box(width: int, height: int, spec: PreprocessSpec) -> tuple[tuple, tuple]:
    """(photo box in fractions, input box in pixels) of open_clip's resize + crop/pad."""
    from imgsearch.decode import _resized_geometry

    new_w, new_h, _ = _resized_geometry(width, height, spec)
    out_h, out_w = spec.size
    x0, x1, ix0, ix1 = _axis(width, new_w, out_w)
    y0, y1, iy0, iy1 = _axis(height, new_h, out_h)
    return (x0, y0, x1, y1), (ix0, iy0, ix1, iy1)


def compute(web: Web, image_id: int, q: str) -> Heat:
    """The photo's heat for `q`, made once per (photo content, text) and remembered."""
    text = explain_text(q)
    image = security.library_file(web.searcher.library, image_id)
    key = f"{image.id}:{image.fingerprint}:{image.size}:{image.mtime_ns}:{text}"
    found = web.heatmaps.find(key)
    if found is not None:
        return found
    with web.lock:
        explanation = web.searcher.explain(image.path, text)
        spec = web.searcher.encoder.spec.preprocess
    h, w = explanation.heat.shape
    width, height = image.width or w, image.height or h
    box, inner = view_box(width, height, spec)
    heat = Heat(explanation, box, inner, (width, height), text)
    web.heatmaps.put(key, heat)
    return heat


def _visible(heat: Heat) -> np.ndarray:
    """The heat over the photo's part of the model input, stretched to 0..1 between its coolest
    and hottest pixel (negative heat, hiding that part raises the score, is no heat)."""
    ix0, iy0, ix1, iy1 = heat.inner
    part = np.clip(heat.explanation.heat[iy0:iy1, ix0:ix1], 0, None)
    if not part.size:
        return part
    low, top = float(part.min()), float(part.max())
    return (part - low) / (top - low) if top > low else np.zeros_like(part)


def overlay_png(heat: Heat) -> bytes:
    """RGBA PNG of the photo's aspect: red where the match comes from, clear elsewhere."""
    from PIL import Image

    width, height = heat.size
    scale = OVERLAY_PX / max(width, height)
    canvas = (max(1, round(width * scale)), max(1, round(height * scale)))
    x0, y0, x1, y1 = heat.box
    left, top = round(x0 * canvas[0]), round(y0 * canvas[1])
    inside = (max(1, round(x1 * canvas[0]) - left), max(1, round(y1 * canvas[1]) - top))
    part = _visible(heat)
    rgba = np.zeros((*part.shape, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (80 * (1 - part)).astype(np.uint8)
    rgba[..., 3] = (200 * part).astype(np.uint8)
    layer = Image.fromarray(rgba, "RGBA").resize(inside, Image.Resampling.BILINEAR)
    out = Image.new("RGBA", canvas, (0, 0, 0, 0))
    out.paste(layer, (left, top))
    data = io.BytesIO()
    out.save(data, "PNG", optimize=True)
    return data.getvalue()


def heat_json(heat: Heat, image_id: int, q: str) -> dict[str, Any]:
    part = _visible(heat)
    rows = np.array_split(np.arange(part.shape[0]), GRID)
    cols = np.array_split(np.arange(part.shape[1]), GRID)
    grid = [[round(float(part[np.ix_(r, c)].mean()), 3) for c in cols] for r in rows]
    py, px = np.unravel_index(int(np.argmax(part)), part.shape)
    x0, y0, x1, y1 = heat.box
    rows_n, cols_n = part.shape
    peak = (x0 + (px + 0.5) / cols_n * (x1 - x0), y0 + (py + 0.5) / rows_n * (y1 - y0))
    return {
        "id": image_id,
        "query": heat.text,
        "score": heat.explanation.score,
        "box": [round(v, 4) for v in heat.box],
        "peak": [round(v, 4) for v in peak],
        "grid": grid,
        "overlay": f"/photo/{image_id}/explain.png?" + urlencode({"q": q}),
    }


async def explain(request: Request) -> Response:
    """GET /photo/{id}/explain.png?q=TEXT (the overlay) or .json (grid, peak, score)."""
    web = _web(request)
    image_id = request.path_params["id"]
    q = request.query_params.get("q", "").strip()
    heat = await run_in_threadpool(compute, web, image_id, q)
    if request.url.path.endswith(".json"):
        return JSONResponse(heat_json(heat, image_id, q))
    png = await run_in_threadpool(overlay_png, heat)
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=3600"})
