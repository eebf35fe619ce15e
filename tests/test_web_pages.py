"""The library-wide pages of `imgsearch serve` in process: the filter panel from the facets,
duplicates, tags, albums ("add to album" included) and the photo page's explain heatmap.
Each answer is compared with the library feature (or CLI command) it must reuse."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.cli import cli
from tests.support.harness import index_in_process, isolated_settings
from tests.support.shapes import CLASSES, caption
from tests.support.web import build_shapes_library, make_app

BASE = "http://127.0.0.1:8000"
PER_CLASS = 3


class World:
    def __init__(self, home: Path, model: str) -> None:
        self.home = home
        self.lib = build_shapes_library(home, model, per_class=PER_CLASS)
        self.dups = home / "shapes" / "dup copies"  # a space: its in: filter must be quoted
        self.dups.mkdir()
        self.exact_src = sorted(self.lib.of_class("red", "circle"))[0]
        shutil.copy(self.exact_src, self.dups / "exact_copy.png")
        self.near_src = sorted(self.lib.of_class("blue", "square"))[0]
        Image.open(self.near_src).resize((96, 96), Image.Resampling.LANCZOS).save(
            self.dups / "near_copy.png"
        )
        classes = home / "classes.toml"
        classes.write_text(
            f"exclusive = true\nlabels = {json.dumps([caption(*c) for c in CLASSES])}\n"
        )
        with self.settings():
            index_in_process(home / "shapes", "--model", model, "-q")
            self.cli("tag", "--labels", classes)

    def settings(self):  # type: ignore[no-untyped-def]
        return isolated_settings(self.home, self.home / "cache", self.lib.path)

    def cli(self, *args: object) -> str:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained_model):
    return World(tmp_path_factory.mktemp("web-pages"), trained_model)


@pytest.fixture
def app(world, tmp_path):
    with world.settings():
        app = make_app(world.lib, tmp_path)
        yield app
        app.state.web.close()


@pytest.fixture
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def post_json(client, app, url: str, body: object, **headers: str):
    headers = {"x-imgsearch-token": app.state.web.token, "origin": BASE, **headers}
    return client.post(url, content=json.dumps(body), headers=headers)


def facet(data: dict, name: str) -> list[dict]:
    return next(f["values"] for f in data["facets"] if f["name"] == name)


# ---- the filter panel -------------------------------------------------------------------------
def test_facets_json_lists_every_facet_with_counts_and_the_filter_it_adds(client, app):
    data = client.get("/facets.json", params={"q": "a red circle"}).json()
    raw = app.state.web.searcher.facets()
    types = facet(data, "file_types")
    assert [(v["value"], v["count"]) for v in types] == [tuple(v) for v in raw["file_types"]]
    png = next(v for v in types if v["value"] == "png")
    assert png["filter"] == "ext:png" and png["active"] is False
    assert png["url"] == "/?q=a+red+circle+ext%3Apng"
    narrowed = client.get("/search.json?" + png["url"][2:]).json()
    assert narrowed["matched"] == png["count"]
    assert narrowed["hits"] and all(h["path"].endswith(".png") for h in narrowed["hits"])
    # the same facet on a query that has it: active, and its link removes it
    again = facet(client.get("/facets.json?" + png["url"][2:]).json(), "file_types")
    assert next(v for v in again if v["value"] == "png") == {
        **png,
        "active": True,
        "url": "/?q=a+red+circle",
    }


def test_a_folder_with_a_space_is_a_quoted_in_filter_and_its_chip_removes_it(client, world):
    folders = facet(client.get("/facets.json", params={"q": "a circle"}).json(), "folders")
    dup = next(v for v in folders if v["value"] == str(world.dups))
    assert dup["count"] == 2 and dup["filter"] == f'in:"{world.dups}"'
    data = client.get("/search.json?" + dup["url"][2:]).json()
    assert {Path(h["path"]).name for h in data["hits"]} == {"exact_copy.png", "near_copy.png"}
    assert data["chips"][0]["remove_url"] == "/?q=a+circle"


def test_tags_and_albums_are_facets_too(client, app):
    tags = facet(client.get("/facets.json").json(), "tags")
    red = next(v for v in tags if v["value"] == "a red circle")
    assert red["filter"] == 'tag:"a red circle"' and red["count"] >= PER_CLASS
    from imgsearch.clip import tags as tags_mod

    hits = client.get("/search.json?" + red["url"][2:]).json()["hits"]
    tagged = tags_mod.ids_with_tag(app.state.web.searcher.library, "a red circle")
    assert sorted(h["id"] for h in hits) == tagged.tolist() and len(hits) == red["count"]
    assert facet(client.get("/facets.json").json(), "albums") == []


def test_the_search_page_loads_the_panel_after_the_grid_and_the_api_has_none(client):
    page = client.get("/", params={"q": "a star"}, headers={"accept": "text/html"}).text
    assert 'data-fragment="/facets?q=a+star&amp;fragment=1"' in page
    assert "panel" not in client.get("/search.json", params={"q": "a star"}).json()
    fragment = client.get("/facets", params={"q": "a star", "fragment": 1}).text
    assert fragment.lstrip().startswith('<aside id="filters"')
    assert 'data-filter="ext:png"' in fragment and 'href="/?q=a+star+ext%3Apng"' in fragment
    whole = client.get("/facets", params={"q": "a star"}, headers={"accept": "text/html"}).text
    assert "<html" in whole and 'data-filter="ext:png"' in whole


def test_facets_are_read_once_per_library_state_and_again_after_an_album_edit(client, app):
    web = app.state.web
    calls = []
    real = web.searcher.facets

    def counted():
        calls.append(1)
        return real()

    web.searcher.facets = counted
    try:
        for _ in range(3):
            assert client.get("/facets.json").status_code == 200
        assert len(calls) == 1
        hit = client.get("/search.json", params={"q": "a star", "size": 1}).json()["hits"][0]
        made = post_json(client, app, "/api/albums/add", {"album": "stars", "ids": [hit["id"]]})
        assert made.status_code == 200
        albums = facet(client.get("/facets.json").json(), "albums")
        assert [(a["value"], a["filter"]) for a in albums] == [("stars", "album:stars")]
        assert len(calls) == 2
    finally:
        del web.searcher.facets
        from imgsearch.clip import albumstore

        albumstore.delete(web.searcher.library, "stars")


# ---- duplicates -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["exact", "near"])
def test_duplicates_are_the_cli_groups_with_evidence_and_a_keeper(client, world, kind):
    data = client.get("/duplicates.json", params={"kind": kind}).json()
    with world.settings():
        cli_groups = json.loads(world.cli("duplicates", "--kind", kind, "--json"))
    assert [(g["kind"], g["keeper"], [m["id"] for m in g["members"]]) for g in data["groups"]] == [
        (g["kind"], g["keeper"], [m["id"] for m in g["members"]]) for g in cli_groups
    ]
    paths = [{m["path"] for m in g["members"]} for g in data["groups"]]
    src = world.exact_src if kind == "exact" else world.near_src
    copy = str(world.dups / ("exact_copy.png" if kind == "exact" else "near_copy.png"))
    assert {src, copy} in [p & {src, copy} for p in paths]
    for g in data["groups"]:
        assert sum(m["keeper"] for m in g["members"]) == 1
        for m in g["members"]:
            assert {"cosine", "hash_distance", "seconds_apart"} <= set(m)
            assert m["thumb"].startswith(f"/thumb/{m['id']}/256?v=")
    if kind == "exact":
        assert all(m["hash_distance"] == 0 for g in data["groups"] for m in g["members"])
    export = client.get(data["export_txt"])
    assert export.headers["content-disposition"].startswith("attachment")
    not_kept = [m["path"] for g in data["groups"] for m in g["members"] if not m["keeper"]]
    assert export.text.splitlines() == not_kept and len(not_kept) == data["not_keepers"]
    download = client.get(data["export_json"])
    assert "attachment" in download.headers["content-disposition"]
    assert download.json()["groups"] == data["groups"]
    assert all(Path(p).exists() for p in not_kept)  # the page never deletes


def test_the_duplicates_page_filters_by_kind_and_refuses_an_unknown_one(client):
    page = client.get("/duplicates", params={"kind": "exact"}, headers={"accept": "text/html"})
    assert page.status_code == 200
    assert 'class="chip active" href="/duplicates?kind=exact"' in page.text
    assert "exact_copy.png" in page.text and "Nothing is deleted" in page.text
    bad = client.get("/duplicates.json", params={"kind": "all"})
    assert bad.status_code == 400 and "use one of exact, near, similar" in bad.json()["error"]


# ---- tags -------------------------------------------------------------------------------------
def test_the_tags_page_lists_the_cli_counts_with_their_searches(client, world):
    data = client.get("/tags.json").json()
    with world.settings():
        listed = json.loads(world.cli("tags", "--json"))
    assert [(t["set"], t["tag"], t["photos"]) for t in data["tags"]] == [
        (t["set"], t["tag"], t["photos"]) for t in listed
    ]
    star = next(t for t in data["tags"] if t["tag"] == "a green star")
    assert star["search"] == "/?q=tag%3A%22a+green+star%22"
    page = client.get("/tags", headers={"accept": "text/html"}).text
    assert 'href="/?q=tag%3A%22a+green+star%22"' in page


# ---- albums -----------------------------------------------------------------------------------
def test_add_to_album_creates_then_refines_it_in_the_library(client, app, world):
    from imgsearch.clip import albumstore

    reds = client.get("/search.json", params={"q": "a red triangle", "size": 3}).json()["hits"]
    blue = client.get("/search.json", params={"q": "a blue triangle", "size": 1}).json()["hits"]
    made = post_json(
        client, app, "/api/albums/add", {"album": "reds", "ids": [h["id"] for h in reds]}
    )
    assert made.status_code == 200, made.text
    assert made.json()["created"] is True and made.json()["like"] == 3
    library = app.state.web.searcher.library
    try:
        album = albumstore.info(library, "reds")
        assert set(album.positives) == {h["path"] for h in reds} and not album.negatives
        refined = post_json(
            client,
            app,
            "/api/albums/add",
            {"album": "reds", "ids": [blue[0]["id"]], "as": "unlike"},
        ).json()
        assert refined["created"] is False and (refined["like"], refined["unlike"]) == (3, 1)
        assert albumstore.info(library, "reds").negatives == (blue[0]["path"],)
        listed = client.get("/albums.json").json()["albums"]
        assert [(a["name"], a["like"], a["unlike"]) for a in listed] == [("reds", 3, 1)]
        page = client.get("/albums/reds.json").json()
        members = albumstore.members(library, "reds")
        assert [h["id"] for h in page["hits"]] == [i for i, _, _ in members]
        assert page["photos"] == len(members) > 0
        photo = client.get(f"/photo/{reds[0]['id']}.json").json()
        assert {"album": "reds", "example": "like", "url": "/albums/reds"}.items() <= next(
            a for a in photo["albums"] if a["album"] == "reds"
        ).items()
        html = client.get("/albums/reds", headers={"accept": "text/html"}).text
        assert 'value="reds"' in html and "Add as unlike" in html
        assert client.get("/albums/nope.json").status_code == 404
    finally:
        albumstore.delete(library, "reds")


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"album": "x", "ids": [1], "as": "unlike"}, 400, "does not exist yet"),
        ({"album": "", "ids": [1]}, 400, "give the album a name"),
        ({"album": "a/b", "ids": [1]}, 400, "without '/'"),
        ({"album": "x", "ids": []}, 400, "non-empty list of photo ids"),
        ({"album": "x", "ids": ["1"]}, 400, "non-empty list of photo ids"),
        ({"album": "x", "ids": [1], "as": "maybe"}, 400, '"as" must be'),
        ({"album": "x", "ids": [999999]}, 404, "no image with id 999999"),
        ("not an object", 400, "send JSON"),
    ],
)
def test_add_to_album_refuses_bad_requests_clearly(client, app, body, status, message):
    response = post_json(client, app, "/api/albums/add", body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "Traceback" not in response.text
    assert client.get("/albums.json").json()["albums"] == []


def test_add_to_album_while_indexing_is_refused_not_hung(client, app):
    library = app.state.web.searcher.library
    hit = client.get("/search.json", params={"q": "a star", "size": 1}).json()["hits"][0]
    import fcntl
    import os

    fd = os.open(library.path / "write.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what an `imgsearch index` run holds
        response = post_json(client, app, "/api/albums/add", {"album": "x", "ids": [hit["id"]]})
    finally:
        os.close(fd)
    assert response.status_code == 409 and "is being written" in response.json()["error"]


# ---- the explain heatmap ----------------------------------------------------------------------
def test_the_photo_page_offers_the_heatmap_of_its_query(client, app):
    hit = client.get("/search.json", params={"q": "a yellow star", "size": 1}).json()["hits"][0]
    photo = client.get(f"/photo/{hit['id']}.json", params={"q": "a yellow star ext:png"}).json()
    assert photo["explain"]["query"] == "a yellow star"
    data = client.get(photo["explain"]["json"]).json()
    explanation = app.state.web.searcher.explain(hit["path"], "a yellow star")
    assert data["score"] == pytest.approx(explanation.score, abs=1e-5)
    assert data["box"] == [0, 0, 1, 1]  # a square picture: the model sees all of it
    heat = np.clip(explanation.heat, 0, None)
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    want = [(x + 0.5) / heat.shape[1], (y + 0.5) / heat.shape[0]]
    assert data["peak"] == pytest.approx(want, abs=1e-4)
    assert len(data["grid"]) == 8 and max(max(r) for r in data["grid"]) > 0
    png = client.get(data["overlay"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(png.content))
    assert overlay.mode == "RGBA" and overlay.size == (720, 720)
    alpha = np.asarray(overlay)[..., 3]
    assert alpha.min() < 10  # clear where hiding the photo costs the match least
    px, py = (round(v * 719) for v in data["peak"])
    assert alpha[py, px] >= 190  # and red at the peak
    page = client.get(
        f"/photo/{hit['id']}", params={"q": "a yellow star"}, headers={"accept": "text/html"}
    ).text
    assert 'id="toggle-heat"' in page and 'id="heat"' in page
    assert client.get(f"/photo/{hit['id']}.json").json()["explain"] is None
    assert client.get(f"/photo/{hit['id']}.json?q=ext:png").json()["explain"] is None


def test_a_wide_photo_overlay_covers_only_what_the_model_saw():
    from imgsearch.modelspec import PreprocessSpec
    from imgsearch.web.heatmap import view_box

    spec = PreprocessSpec(size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3)
    box, inner = view_box(400, 200, spec)  # shortest side -> 224, centre crop of the width
    assert box == pytest.approx((0.25, 0.0, 0.75, 1.0), abs=0.01)
    assert inner == (0, 0, 224, 224)


def test_explain_refuses_a_query_without_text(client):
    hit = client.get("/search.json", params={"q": "a star", "size": 1}).json()["hits"][0]
    response = client.get(f"/photo/{hit['id']}/explain.json", params={"q": "ext:png"})
    assert response.status_code == 400 and "explain needs a text query" in response.json()["error"]
    assert client.get("/photo/99999/explain.json", params={"q": "a star"}).status_code == 404


def test_the_photo_page_tag_of_several_words_searches_that_tag(client, app):
    from imgsearch.clip import tags as tags_mod

    library = app.state.web.searcher.library
    image_id = int(tags_mod.ids_with_tag(library, "a green star")[0])
    tag = next(t for t in client.get(f"/photo/{image_id}.json").json()["tags"])
    assert tag["search"] == "/?q=tag%3A%22a+green+star%22"
    hits = client.get("/search.json?" + tag["search"][2:]).json()["hits"]
    assert sorted(h["id"] for h in hits) == tags_mod.ids_with_tag(library, "a green star").tolist()


def test_removing_an_example_refits_the_album_and_keeps_its_last_like(client, app):
    from imgsearch.clip import albumstore

    reds = client.get("/search.json", params={"q": "a red square", "size": 2}).json()["hits"]
    ids = [h["id"] for h in reds]
    assert post_json(client, app, "/api/albums/add", {"album": "sq", "ids": ids}).status_code == 200
    library = app.state.web.searcher.library
    try:
        page = client.get("/albums/sq.json").json()
        assert {(e["id"], e["as"]) for e in page["example_photos"]} == {(i, "like") for i in ids}
        gone = post_json(client, app, "/api/albums/remove", {"album": "sq", "ids": [ids[0]]})
        assert gone.status_code == 200 and gone.json()["like"] == 1
        assert albumstore.info(library, "sq").positives == (reds[1]["path"],)
        last = post_json(client, app, "/api/albums/remove", {"album": "sq", "ids": [ids[1]]})
        assert last.status_code == 400 and "needs at least one like" in last.json()["error"]
        assert albumstore.info(library, "sq").positives == (reds[1]["path"],)  # untouched
        stranger = post_json(client, app, "/api/albums/remove", {"album": "sq", "ids": [ids[0]]})
        assert stranger.status_code == 400 and "is not an example" in stranger.json()["error"]
        nothing = post_json(client, app, "/api/albums/remove", {"album": "nope", "ids": [ids[0]]})
        assert nothing.status_code == 404
        bare = client.post("/api/albums/remove", content=json.dumps({"album": "sq", "ids": ids}))
        assert bare.status_code == 403
    finally:
        albumstore.delete(library, "sq")
