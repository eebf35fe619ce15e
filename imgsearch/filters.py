"""Filters -> the ids of the images they allow, by SQL over the library's metadata columns.

Each filter is a WHERE fragment; `|` values are OR-ed, filters AND-ed, a negated filter keeps
what does not match (unknown metadata included). `tag:` and `album:` come from providers the
features that own them (`_FEATURES`), so this module knows no tag or album tables.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsearch.paths import canonical, prefix_range, to_key
from imgsearch.query import Filter, QueryError

if TYPE_CHECKING:
    import numpy.typing as npt

    from imgsearch.library import Library

# ext: names -> file_type values (content-sniffed, lower case)
EXT_TYPES: dict[str, tuple[str, ...]] = {
    "jpg": ("jpeg",), "jpeg": ("jpeg",), "jpe": ("jpeg",), "jfif": ("jpeg",),
    "png": ("png",), "gif": ("gif",), "bmp": ("bmp",), "webp": ("webp",),
    "tif": ("tiff",), "tiff": ("tiff",), "heic": ("heif",), "heif": ("heif",),
    "avif": ("avif",),
}  # fmt: skip
HAS = {
    "gps": "latitude IS NOT NULL",
    "date": "taken_at_source IS NOT NULL AND taken_at_source != 'mtime'",
    "camera": "camera_model IS NOT NULL",
}
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
_NEAR = re.compile(r"^(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?)(km|m)?)?$")

Provider = Callable[["Library", Sequence[str]], "npt.NDArray[np.int64]"]


# the features that answer them, imported on first use: "module:function(library, name)"
_FEATURES = {
    "tag": "imgsearch.clip.tags:ids_with_tag",
    "album": "imgsearch.clip.albumstore:album_member_ids",
}


def _provider(key: str) -> Provider:
    """The feature's answer to its key: the ids having any of the values."""
    import importlib

    module, _, name = _FEATURES[key].partition(":")
    one = getattr(importlib.import_module(module), name)

    def any_of(library: Library, values: Sequence[str]) -> npt.NDArray[np.int64]:
        parts = [np.asarray(one(library, v), dtype=np.int64) for v in values]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    return any_of


def _bounds(value: str, key: str) -> tuple[str, str]:
    """[start, end) of a date given as YYYY, YYYY-MM or YYYY-MM-DD, as ISO strings."""
    m = _DATE.match(value)
    if not m:
        raise QueryError(f"{key}:{value}: dates are YYYY, YYYY-MM or YYYY-MM-DD")
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    try:
        if day:
            start = date(year, int(month), int(day))
            end = date.fromordinal(start.toordinal() + 1)
        elif month:
            start = date(year, int(month), 1)
            end = date(year + (start.month == 12), start.month % 12 + 1, 1)
        else:
            start, end = date(year, 1, 1), date(year + 1, 1, 1)
    except ValueError as exc:
        raise QueryError(f"{key}:{value}: {exc}") from None
    return start.isoformat(), end.isoformat()


def _condition(flt: Filter, value: str) -> tuple[str, list[Any]]:
    """One value of one filter as (SQL, args) over `images`."""
    key = flt.key
    if key == "after":
        return "taken_at >= ?", [_bounds(value, key)[0]]
    if key == "before":
        return "taken_at < ?", [_bounds(value, key)[0]]
    if key == "year":
        start, end = _bounds(value, key) if re.fullmatch(r"\d{4}", value) else ("", "")
        if not start:
            raise QueryError(f"year:{value}: give a year such as year:2023")
        return "taken_at >= ? AND taken_at < ?", [start, end]
    if key == "month":
        if not value.isdigit() or not 1 <= int(value) <= 12:
            raise QueryError(f"month:{value}: give a month number 1-12")
        return "substr(taken_at, 6, 2) = ?", [f"{int(value):02d}"]
    if key in ("camera", "lens"):
        like = f"%{value.lower()}%"
        if key == "lens":
            return "lower(lens) LIKE ?", [like]
        return "lower(coalesce(camera_make, '') || ' ' || coalesce(camera_model, '')) LIKE ?", [
            like
        ]
    if key == "in":
        folder = canonical(value)
        if not os.path.isdir(folder):
            raise QueryError(f"in:{value}: no such folder")
        low, high = prefix_range(folder)
        return "(path >= ? AND path < ?)", [low, high]
    if key == "ext":
        types = EXT_TYPES.get(value.lower().lstrip("."))
        if types is None:
            raise QueryError(f"ext:{value}: known types are {', '.join(sorted(EXT_TYPES))}")
        return f"file_type IN ({','.join('?' * len(types))})", list(types)
    if key == "has":
        if value not in HAS:
            raise QueryError(f"has:{value}: use has:{', has:'.join(HAS)}")
        return HAS[value], []
    raise AssertionError(key)


def near_box(value: str) -> tuple[float, float, float]:
    """(lat, lon, radius_km) of near:LAT,LON[,R(km|m)] (default 1 km)."""
    m = _NEAR.match(value.replace(" ", ""))
    if not m:
        raise QueryError(f"near:{value}: write near:LAT,LON or near:LAT,LON,5km")
    lat, lon = float(m.group(1)), float(m.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise QueryError(f"near:{value}: latitude -90..90, longitude -180..180")
    radius = float(m.group(3) or 1.0) / (1000.0 if m.group(4) == "m" else 1.0)
    return lat, lon, radius


def _near_ids(cur: sqlite3.Cursor, value: str) -> set[int]:
    """Images within the radius: a bounding box in SQL, the exact great-circle distance here."""
    lat, lon, km = near_box(value)
    dlat = km / 111.2
    dlon = km / max(111.2 * math.cos(math.radians(lat)), 1e-6)
    rows = cur.execute(
        "SELECT id, latitude, longitude FROM images WHERE latitude BETWEEN ? AND ? "
        "AND longitude BETWEEN ? AND ?",
        (lat - dlat, lat + dlat, lon - dlon, lon + dlon),
    ).fetchall()
    return {i for i, a, b in rows if haversine_km(lat, lon, a, b) <= km}


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, h)))


def sql_of(filters: Sequence[Filter]) -> tuple[str, list[Any]]:
    """(WHERE over `images`, its args) of the filters answered in SQL ("1" when none); a bad
    value raises QueryError here, before any SQL runs. No status test and no ORDER BY: either
    makes SQLite read every matching row of the table (a 20k library took 50 ms for 2 matches)
    instead of the metadata column's covering index; failed rows (few) are removed after."""
    sql_parts: list[str] = []
    args: list[Any] = []
    for flt in filters:
        if flt.key in ("tag", "album"):
            continue
        if flt.key == "near":
            for value in flt.values:
                near_box(value)
            continue
        conds = [_condition(flt, v) for v in flt.values]
        clause = " OR ".join(f"({c})" for c, _ in conds)
        sql_parts.append(f"NOT coalesce(({clause}), 0)" if flt.negate else f"({clause})")
        for _, a in conds:
            args += a
    return " AND ".join(sql_parts) or "1", args


def outside_sets(
    library: Library, cur: sqlite3.Cursor, filters: Sequence[Filter]
) -> list[tuple[npt.NDArray[np.int64], bool]]:
    """[(sorted ids, negate)] of the filters answered outside SQL: tag:, album:, near:."""
    sets: list[tuple[npt.NDArray[np.int64], bool]] = []
    for flt in filters:
        if flt.key in ("tag", "album"):
            found = np.unique(np.asarray(_provider(flt.key)(library, flt.values), np.int64))
            sets.append((found, flt.negate))
        elif flt.key == "near":
            near = set().union(*(_near_ids(cur, v) for v in flt.values))
            sets.append((np.array(sorted(near), dtype=np.int64), flt.negate))
    return sets


def matching_ids(library: Library, filters: Sequence[Filter]) -> npt.NDArray[np.int64]:
    """Sorted ids of the indexed images every filter allows (inside the caller's snapshot)."""
    from imgsearch import filterset

    with library.snapshot() as cur:
        return filterset.build(library, cur, filters, ()).ids(cur)


def newest_first(library: Library, ids: npt.NDArray[np.int64] | None) -> list[int]:
    """Ids ordered newest first (capture time, then id), for a query that is only filters."""
    with library.snapshot() as cur:
        rows = cur.execute(
            "SELECT id, taken_at FROM images WHERE status = 'ok' "
            "ORDER BY taken_at IS NULL, taken_at DESC, id DESC"
        ).fetchall()
    if ids is None:
        return [r[0] for r in rows]
    allowed = set(ids.tolist())
    return [r[0] for r in rows if r[0] in allowed]


def folder_key(path: str) -> bytes:
    """The `folder` column of a path."""
    return to_key(os.path.dirname(path))


# ---- facets -----------------------------------------------------------------------------------
FACETS = ("cameras", "years", "months", "folders", "file_types")
_FACET_SQL = {
    "cameras": "coalesce(camera_make, '') || char(31) || coalesce(camera_model, '')",
    "years": "substr(taken_at, 1, 4)",
    "months": "substr(taken_at, 1, 7)",
    "folders": "folder",
    "file_types": "file_type",
}


def facets(library: Library) -> dict[str, list[tuple[str, int]]]:
    """Each facet's values with image counts, most common first (menus, `imgsearch facets`);
    values are what the matching filter takes (camera:, year:, in:, ext:)."""
    from imgsearch.paths import from_key

    out: dict[str, list[tuple[str, int]]] = {}
    with library.snapshot() as cur:
        for name in FACETS:
            expr = _FACET_SQL[name]
            rows = cur.execute(
                f"SELECT {expr} AS v, count(*) AS n FROM images WHERE status = 'ok' "
                f"AND {expr} IS NOT NULL AND {expr} != '' GROUP BY v ORDER BY n DESC, v"
            ).fetchall()
            values = [(from_key(v) if isinstance(v, bytes) else str(v), int(n)) for v, n in rows]
            out[name] = _camera_labels(values) if name == "cameras" else values
    return out


def camera_label(make: str | None, model: str | None) -> str:
    """ "Canon" + "Canon EOS 40D" -> "Canon EOS 40D"; "Apple" + "iPhone 6" -> "Apple iPhone 6"
    (makers often repeat their name in the model); camera: matches either part."""
    make, model = (make or "").strip(), (model or "").strip()
    first = make.split()[0].lower() if make else ""
    if not model:
        return make
    return model if not first or model.lower().startswith(first) else f"{make} {model}"


def _camera_labels(values: list[tuple[str, int]]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for raw, n in values:
        make, _, model = raw.partition("\x1f")
        label = camera_label(make, model)
        if label:
            counts[label] = counts.get(label, 0) + n
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
