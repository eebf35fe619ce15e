"""Filters in the query language: metadata read at index time narrows every query, correctly
and completely; a filter alone lists photos newest first; empty filters say so; pages come
from a cursor over one ranked list; old libraries get metadata without re-embedding."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from imgsearch import Searcher
from imgsearch.library import DB_NAME, Library
from imgsearch.query import Filter, Query, QueryError, parse, parse_text
from tests.conftest import hits

Base, GPS, IFD = ExifTags.Base, ExifTags.GPS, ExifTags.IFD
OLD = 1_577_836_800  # 2020-01-01, the mtime of the files without EXIF dates


def _exif(when: str, make: str, model: str, gps: tuple[float, float] | None) -> bytes:
    exif = Image.Exif()
    exif[Base.Make], exif[Base.Model] = make, model
    exif.get_ifd(IFD.Exif)[Base.DateTimeOriginal] = when
    if gps is not None:
        g = exif.get_ifd(IFD.GPSInfo)
        for axis, value, refs in (("Latitude", gps[0], "NS"), ("Longitude", gps[1], "EW")):
            deg = abs(value)
            d, m = int(deg), int((deg - int(deg)) * 60)
            sec = round(((deg - d) * 60 - m) * 60, 2)
            g[getattr(GPS, f"GPS{axis}Ref")] = refs[0] if value >= 0 else refs[1]
            g[getattr(GPS, f"GPS{axis}")] = (float(d), float(m), float(sec))
    return exif.tobytes()


def _picture(path: Path, seed: int, exif: bytes | None = None) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    if path.suffix == ".png":
        Image.fromarray(pixels).save(path)
    else:
        Image.fromarray(pixels).save(path, "JPEG", quality=90, exif=exif or b"")
    os.utime(path, (OLD, OLD))
    return path


@pytest.fixture
def dated(run, tiny_model, tmp_path) -> dict[str, list[Path]]:
    """4 Pixel photos of 2021 in Lisbon, 3 Canon photos of 2023 without GPS, 2 PNGs."""
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    (root / "home").mkdir()
    groups: dict[str, list[Path]] = {"pixel": [], "canon": [], "png": []}
    for i in range(4):
        exif = _exif(f"2021:06:{10 + i:02d} 12:00:00", "Google", "Pixel 7", (38.72, -9.14))
        groups["pixel"].append(_picture(root / "trip" / f"p{i}.jpg", i, exif))
    for i in range(3):
        exif = _exif(f"2023:0{i + 1}:05 08:00:00", "Canon", "EOS R5", None)
        groups["canon"].append(_picture(root / "home" / f"c{i}.jpg", 10 + i, exif))
    for i in range(2):
        groups["png"].append(_picture(root / "home" / f"s{i}.png", 20 + i))
    run("index", root, "--model", tiny_model)
    return groups


def _names(found: list[dict]) -> set[str]:
    return {Path(h["path"]).name for h in found}


def _q(run, *words: str, code: int = 0) -> list[dict]:
    return hits(run("query", "a picture", *words, "-k", "50", "--json", code=code))


def test_date_camera_place_type_and_folder_filters(run, dated):
    names = {k: {p.name for p in v} for k, v in dated.items()}
    assert _names(_q(run, "after:2022")) == names["canon"]
    assert _names(_q(run, "before:2021-06-12")) == {"p0.jpg", "p1.jpg"} | names["png"]
    assert _names(_q(run, "year:2021|2023")) == names["pixel"] | names["canon"]
    assert _names(_q(run, "month:6")) == names["pixel"]
    assert _names(_q(run, "camera:pixel")) == names["pixel"]
    assert _names(_q(run, "-camera:pixel")) == names["canon"] | names["png"]  # unknown kept
    assert _names(_q(run, "has:gps")) == names["pixel"]
    assert _names(_q(run, "near:38.72,-9.14,5km")) == names["pixel"]
    assert _names(_q(run, "ext:png")) == names["png"]
    assert _names(_q(run, "ext:jpg", "-in:" + str(dated["pixel"][0].parent))) == names["canon"]
    assert _names(_q(run, "camera:canon|pixel", "after:2023-02")) == {"c1.jpg", "c2.jpg"}


def test_metadata_is_in_the_hits(run, dated):
    (hit,) = _q(run, "camera:pixel", "before:2021-06-11")
    assert hit["taken_at"] == "2021-06-10T12:00:00" and hit["taken_at_source"] == "DateTimeOriginal"
    assert (hit["camera_make"], hit["camera_model"], hit["file_type"]) == (
        "Google",
        "Pixel 7",
        "jpeg",
    )
    assert hit["latitude"] == pytest.approx(38.72, abs=1e-3)
    png = _q(run, "ext:png")[0]
    assert png["taken_at_source"] == "mtime" and png["camera_model"] is None


def test_an_empty_filter_says_so(run, dated):
    result = run("query", "a picture", "near:40.0,-3.7,5km", "--json")
    assert hits(result) == [] and "no results: no photos match near:40.0,-3.7,5km" in result.stderr
    table = run("query", "x", "after:2030")
    assert table.stdout == "" and "no photos match after:2030" in table.stderr


def test_a_filter_alone_lists_photos_newest_first(run, dated):
    found = hits(run("query", "camera:canon|pixel", "-k", "50", "--json"))
    dates = [h["taken_at"] for h in found]
    assert dates == sorted(dates, reverse=True) and len(found) == 7
    assert all(h["score"] is None for h in found)


def test_exactly_k_when_at_least_k_match_and_equal_to_brute_force(run, dated, isolated_env):
    assert len(hits(run("query", "a picture", "camera:pixel|canon", "-k", "5", "--json"))) == 5
    with Searcher() as s:
        vec = s.embed_text("a picture")
        got = s.search(parse(["a picture", "camera:pixel|canon"], k=5))
        allowed = [h.id for h in s.search(parse(["camera:pixel|canon"], k=50)).hits]
        ids, mat = s.library.vectors_for_ids(np.array(sorted(allowed)))
    best = ids[np.argsort(-(mat @ vec), kind="stable")[:5]]
    assert [h.id for h in got.hits] == best.tolist()
    assert got.matched == 7 and got.strategy == "exact"


def test_unknown_filter_keys_are_named_with_the_known_ones(run, dated):
    result = run("query", "dog", "colour:red", code=2)
    assert "unknown filter 'colour:'" in result.stderr and "camera:" in result.stderr
    assert hits(run("query", "colour:red and blue", "--json"))  # a word with a space is text
    assert parse_text('dog "note:1"').terms[0].value == "dog note:1"  # quoted: text
    assert parse_text('camera:"Pixel 7" dog').filters == (Filter("camera", ("Pixel 7",)),)
    with pytest.raises(QueryError, match="YYYY"):
        run_query = Query(filters=(Filter("after", ("June",)),))
        with Searcher() as s:
            s.search(run_query)


def test_subtraction_and_negated_filters_live_together(run, dated):
    q = parse(["a", "picture", "-", "people", "-camera:pixel", "ext:jpg|png"])
    assert [t.weight for t in q.terms] == [1.0, -1.0]
    assert q.filters == (Filter("camera", ("pixel",), True), Filter("ext", ("jpg", "png")))


def test_typed_filters_in_python(dated):
    with Searcher() as s:
        assert len(s.query("a picture", k=50, camera="pixel", year=[2021, 2023])) == 4
        assert len(s.query("a picture", k=50, has="gps", near="38.72,-9.14,2km")) == 4
        assert len(s.query("a picture", k=50, folder=dated["png"][0].parent, ext="png")) == 2
        with pytest.raises(QueryError, match="unknown filter argument"):
            s.query("a picture", colour="red")


def test_pages_follow_one_ranked_list_without_gaps_or_repeats(dated):
    with Searcher() as s:
        whole = [h.id for h in s.search(Query(terms=parse(["a picture"]).terms, k=50)).hits]
        seen: list[int] = []
        q = Query(terms=parse(["a picture"]).terms, k=2)
        for _ in range(20):
            page = s.search(q)
            seen += [h.id for h in page.hits]
            if page.next_cursor is None:
                break
            q = Query(terms=q.terms, k=2, cursor=page.next_cursor)
        assert seen == whole and len(whole) == 9
        with pytest.raises(QueryError, match="another query"):
            s.search(Query(terms=parse(["something else"]).terms, k=2, cursor=q.cursor))


def test_facets_count_cameras_years_folders_and_types(run, dated):
    found = json.loads(run("facets", "--json").stdout)
    assert {f["value"]: f["images"] for f in found["cameras"]} == {
        "Google Pixel 7": 4,
        "Canon EOS R5": 3,
    }
    assert {f["value"]: f["images"] for f in found["years"]} == {"2021": 4, "2023": 3, "2020": 2}
    assert {f["value"]: f["images"] for f in found["file_types"]} == {"jpeg": 7, "png": 2}
    assert {Path(f["value"]).name: f["images"] for f in found["folders"]} == {"home": 5, "trip": 4}
    assert "Google Pixel 7" in run("facets").stdout


def test_old_libraries_get_metadata_without_reembedding(run, dated, isolated_env):
    con = sqlite3.connect(isolated_env / DB_NAME)
    con.execute(
        "UPDATE images SET camera_make = NULL, camera_model = NULL, latitude = NULL, "
        "file_type = NULL, meta_version = NULL"
    )
    con.commit()
    before = dict(con.execute("SELECT id, vector_gen FROM images"))
    gen = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    assert _q(run, "camera:pixel") == []
    result = run("index")
    assert "0 added, 0 updated" in result.stderr and "reading photo metadata of 9" in result.stderr
    assert len(_q(run, "camera:pixel")) == 4 and len(_q(run, "has:gps")) == 4
    assert dict(con.execute("SELECT id, vector_gen FROM images")) == before
    assert con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone() == gen
    with Library.open(isolated_env) as lib:
        assert lib.stale_metadata(1) == []


def test_files_that_failed_to_index_match_no_filter(run, dated, tmp_path):
    """A broken file has a row (status error, no metadata): a negated filter, which keeps
    unknown metadata, still never counts it, nor does a filter alone list it."""
    broken = tmp_path / "photos" / "home" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    run("index", tmp_path / "photos")
    with Searcher() as s:
        assert s.search(parse(["a picture", "-ext:png"], k=50)).matched == 7
        listed = s.search(parse(["-camera:pixel"], k=50)).hits
    assert {Path(h.path).name for h in listed} == {"c0.jpg", "c1.jpg", "c2.jpg", "s0.png", "s1.png"}
