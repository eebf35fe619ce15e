"""`imgsearch serve` in a real browser: Debian's chromium, driven by Playwright, over a library of
the trained tiny model's coloured shapes, served by uvicorn on a free loopback port.

Screenshots land in the test's tmp dir (printed); with IMGSEARCH_DOCS_SCREENSHOTS=1 the README's
pictures in docs/ are made again from the same pages.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.web import PER_CLASS, build_shapes_library, chromium, make_app, serving

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 20 * (PER_CLASS + 1)  # the PNGs and one JPEG per class
# read now: the isolated test environment drops every IMGSEARCH_* variable
DOCS_SHOTS = os.environ.get("IMGSEARCH_DOCS_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, trained_model):
    return build_shapes_library(tmp_path_factory.mktemp("web-browser"), trained_model)


@pytest.fixture(scope="module")
def server(shapes, tmp_path_factory):
    from tests.support.harness import isolated_settings

    tmp = tmp_path_factory.mktemp("web-server")
    with isolated_settings(tmp, tmp / "cache", shapes.path):
        app = make_app(shapes, tmp)
        with serving(app) as url:
            yield url, app
        app.state.web.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser, server):
    url, _ = server
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.set_default_timeout(15_000)
    yield tab
    tab.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"screenshots in {folder}")


def screenshot(page, shots: Path, name: str) -> None:
    path = shots / name
    page.screenshot(path=str(path))
    if DOCS_SHOTS:
        shutil.copy(path, ROOT / "docs" / name)


def search(page, base: str, text: str) -> None:
    page.goto(base + "/")
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_selector(".hit img")


def shown(page) -> list[dict]:
    return page.eval_on_selector_all(
        ".hit",
        "cells => cells.map(c => ({id: +c.dataset.id, rank: +c.dataset.rank, path: c.dataset.path,"
        " score: +c.dataset.score}))",
    )


def wait_images(page, n: int) -> None:
    page.wait_for_function(
        "n => [...document.querySelectorAll('.hit img')].slice(0, n)"
        ".every(i => i.complete && i.naturalWidth > 0)",
        arg=n,
    )


def test_a_typed_query_shows_the_right_pictures_first(page, server, shapes, shots):
    url, _ = server
    search(page, url, "a blue square")
    top = shown(page)[:PER_CLASS]
    assert {h["path"] for h in top} <= shapes.of_class("blue", "square")
    assert [h["rank"] for h in top] == list(range(1, PER_CLASS + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(top, top[1:]))
    wait_images(page, 24)
    page.wait_for_selector("#filters[data-ready]")  # the panel comes after the grid
    first = page.locator(".hit").first
    first.hover()
    score = first.locator(".score")
    assert score.is_visible()
    assert float(score.inner_text()) == pytest.approx(top[0]["score"], abs=1e-3)
    assert "score" in first.get_attribute("title")
    screenshot(page, shots, "web-search.png")


def test_scrolling_loads_every_page_with_no_duplicates_and_no_gaps(page, server):
    url, _ = server
    search(page, url, "a circle")
    assert len(shown(page)) == 48  # the first page only
    for _ in range(20):
        if page.locator(".end").count():
            break
        page.mouse.wheel(0, 20_000)
        page.wait_for_timeout(200)
    page.wait_for_selector(".end")
    hits = shown(page)
    assert [h["rank"] for h in hits] == list(range(1, TOTAL + 1))
    assert len({h["id"] for h in hits}) == TOTAL
    assert all(a["score"] >= b["score"] - 1e-6 for a, b in zip(hits, hits[1:]))
    assert page.locator(".end").inner_text().startswith(f"{TOTAL} photos")


def test_more_like_this(page, server, shapes):
    url, _ = server
    search(page, url, "a red star")
    first = shown(page)[0]
    assert first["path"] in shapes.of_class("red", "star")
    page.locator(".hit").first.hover()
    page.locator(".hit .like").first.click()
    page.wait_for_url(f"**/?similar={first['id']}")
    page.wait_for_selector(".hit")
    similar = shown(page)
    assert first["id"] not in {h["id"] for h in similar}
    assert similar[0]["path"] in shapes.of_class("red", "star")
    assert "Photos like" in page.locator(".asked").inner_text()


def test_photo_page_preview_metadata_open_and_copy(page, server, shapes, shots):
    url, app = server
    search(page, url, "a green triangle")
    first = shown(page)[0]
    page.locator(".hit .open").first.click()
    page.wait_for_url(f"**/photo/{first['id']}?q=a%20green%20triangle")
    page.wait_for_function(
        "() => { const i = document.getElementById('preview'); return i && i.naturalWidth > 0 }"
    )
    assert page.locator("dd.path").inner_text() == first["path"]
    assert "64 × 64 px" in page.locator(".meta dl").inner_text()
    page.click("#reveal")
    page.wait_for_selector("#toast.show")
    assert app.state.opened.paths[-1] == first["path"]
    page.click("#copy-path")
    page.wait_for_function("() => document.getElementById('toast').textContent === 'Path copied'")
    assert page.evaluate("navigator.clipboard.readText()") == first["path"]
    screenshot(page, shots, "web-photo.png")
    page.keyboard.press("Escape")
    page.wait_for_selector(".hit")
    assert "q=a+green+triangle" in page.url


def test_selection_click_shift_ctrl_and_download(page, server):
    url, _ = server
    search(page, url, "a yellow square")
    cells = page.locator(".hit")
    cells.nth(0).click(position={"x": 20, "y": 20})
    cells.nth(4).click(position={"x": 20, "y": 20}, modifiers=["Shift"])
    assert page.locator(".hit.selected").count() == 5
    cells.nth(2).click(position={"x": 20, "y": 20}, modifiers=["Control"])
    assert page.locator(".hit.selected").count() == 4
    assert page.locator("#selection .count").inner_text() == "4 selected"
    hits = shown(page)
    want = [hits[i]["path"] for i in (0, 1, 3, 4)]
    with page.expect_download() as info:
        page.click("#selection [data-action=txt]")
    assert Path(info.value.path()).read_text().splitlines() == want
    with page.expect_download() as info:
        page.click("#selection [data-action=json]")
    rows = json.loads(Path(info.value.path()).read_text())
    assert [r["path"] for r in rows] == want and all("id" in r and "score" in r for r in rows)
    page.click("#selection [data-action=copy]")
    page.wait_for_selector("#toast.show")
    assert page.evaluate("navigator.clipboard.readText()").splitlines() == want
    page.keyboard.press("Control+a")
    assert page.locator(".hit.selected").count() == len(hits)
    page.keyboard.press("Escape")
    assert page.locator(".hit.selected").count() == 0
    assert page.locator("#selection").is_hidden()


def test_keyboard_slash_arrows_enter_and_escape(page, server):
    url, _ = server
    page.goto(url + "/")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a purple circle")
    page.keyboard.press("Enter")
    page.wait_for_selector(".hit")
    page.keyboard.press("Escape")  # leave the search box
    focused = "() => +document.activeElement.dataset.rank"
    page.keyboard.press("ArrowRight")
    assert page.evaluate(focused) == 1
    page.keyboard.press("ArrowRight")
    assert page.evaluate(focused) == 2
    columns = page.evaluate(
        "() => { const c = [...document.querySelectorAll('.hit')];"
        " return c.findIndex(x => x.offsetTop !== c[0].offsetTop) }"
    )
    assert columns > 1
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == 2 + columns
    page.keyboard.press("ArrowLeft")
    rank = page.evaluate(focused)
    assert rank == 1 + columns
    target = shown(page)[rank - 1]["id"]
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/photo/{target}?q=*")
    page.wait_for_selector("body[data-ready=photo]")  # its key handler is attached
    page.keyboard.press("Escape")
    page.wait_for_selector(".hit")
    assert "q=a+purple+circle" in page.url


def test_dropping_a_picture_searches_by_example(page, server, shapes):
    url, _ = server
    page.goto(url + "/")
    assert "Type what you are looking for" in page.locator(".empty").inner_text()
    example = sorted(shapes.of_class("blue", "star"))[0]
    data = list(Path(example).read_bytes())
    page.evaluate(
        """bytes => {
            const file = new File([new Uint8Array(bytes)], "example.png", {type: "image/png"});
            const dt = new DataTransfer();
            dt.items.add(file);
            document.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        data,
    )
    page.wait_for_url("**/?example=*")
    page.wait_for_selector(".hit")
    top = shown(page)
    assert top[0]["path"] == example  # the same picture is in the library: it comes first
    assert top[1]["path"] in shapes.of_class("blue", "star")


def test_a_filter_chip_narrows_and_removing_it_widens(page, server, shapes):
    url, _ = server
    folder = f"in:{shapes.home / 'shapes' / 'jpg'}"
    search(page, url, f"a red circle {folder}")
    chip = page.locator(".chips .chip")
    assert chip.count() == 1 and folder in chip.inner_text()
    assert "20 photos match" in page.locator(".chips").inner_text()
    narrow = shown(page)
    assert len(narrow) == 20 and all(h["path"].endswith(".jpg") for h in narrow)
    assert narrow[0]["path"] in shapes.of_class("red", "circle")
    chip.click()
    page.wait_for_selector(".hit")
    assert page.input_value("#q") == "a red circle"
    wide = shown(page)
    assert len(wide) == 48 and any(h["path"].endswith(".png") for h in wide)
    assert page.locator(".chips").count() == 0


def test_a_facet_of_the_panel_adds_its_filter_and_clicking_it_again_removes_it(page, server):
    url, _ = server
    search(page, url, "a red circle")
    jpeg = page.locator('#filters a[data-filter="ext:jpeg"]')
    assert jpeg.locator("xpath=..").locator(".n").inner_text() == "20"
    jpeg.click()
    page.wait_for_selector(".chips .chip")
    assert page.input_value("#q") == "a red circle ext:jpeg"
    narrow = shown(page)
    assert len(narrow) == 20 and all(h["path"].endswith(".jpg") for h in narrow)
    active = page.locator('#filters a.active[data-filter="ext:jpeg"]')
    assert active.count() == 1
    active.click()
    page.wait_for_selector(".hit")
    assert page.input_value("#q") == "a red circle" and len(shown(page)) == 48


def test_the_date_range_of_the_panel_adds_after_and_before(page, server):
    url, _ = server
    search(page, url, "a star")
    form = page.locator("#filters form.dates")
    first, last = form.get_attribute("data-first"), form.get_attribute("data-last")
    page.fill("#filters input[name=from]", first)
    page.fill("#filters input[name=to]", last)
    page.click("#filters form.dates button")
    page.wait_for_selector(".chips .chip")
    year, month = map(int, last.split("-"))
    after_last = f"{year + month // 12}-{month % 12 + 1:02d}"
    assert page.input_value("#q") == f"a star after:{first} before:{after_last}"
    assert page.locator(".chips .chip").count() == 2
    assert len(shown(page)) == 48  # every shape was made in that range


def test_the_photo_page_overlays_the_heatmap_of_the_query(page, server, shots):
    url, _ = server
    search(page, url, "a yellow star")
    first = shown(page)[0]
    page.locator(".hit .open").first.click()
    page.wait_for_selector("body[data-ready=photo]")
    heat = page.locator("#heat")
    assert heat.is_hidden()
    toggle = page.locator("#toggle-heat")
    assert "a yellow star" in toggle.inner_text()
    toggle.click()
    page.wait_for_function(
        "() => { const h = document.getElementById('heat'); return !h.hidden && h.naturalWidth }"
    )
    assert toggle.get_attribute("aria-pressed") == "true"
    assert page.locator("#heat-note").inner_text().startswith("“a yellow star” scores ")
    assert heat.bounding_box() == page.locator("#preview").bounding_box()  # lies right over it
    data = page.evaluate(f"fetch('/photo/{first['id']}/explain.json?q=a+yellow+star')"
                         ".then(r => r.json())")  # fmt: skip
    assert page.locator("#heat").get_attribute("src") == data["overlay"]
    screenshot(page, shots, "web-heatmap.png")
    toggle.click()
    assert heat.is_hidden() and toggle.get_attribute("aria-pressed") == "false"


def test_selection_then_add_to_album_changes_the_album_in_the_library(page, server):
    from imgsearch.clip import albumstore

    url, app = server
    library = app.state.web.searcher.library
    search(page, url, "a yellow circle")
    cells = page.locator(".hit")
    cells.nth(0).click(position={"x": 20, "y": 20})
    cells.nth(2).click(position={"x": 20, "y": 20}, modifiers=["Shift"])
    want = {h["path"] for h in shown(page)[:3]}
    page.fill("#album-name", "yellows")
    page.click("#selection [data-action=like]")
    page.wait_for_selector("body[data-album='yellows:3:0']")
    try:
        assert set(albumstore.info(library, "yellows").positives) == want
        page.goto(url + "/albums")
        page.click("table.albums a[href='/albums/yellows']")
        page.wait_for_selector(".page-album .hit")
        members = albumstore.members(library, "yellows")
        assert [h["id"] for h in shown(page)] == [i for i, _, _ in members]
        outsider = page.locator(".hit").last  # the album's weakest member: refine it away
        outsider_path = outsider.get_attribute("data-path")
        outsider.click(position={"x": 20, "y": 20})
        assert page.input_value("#album-name") == "yellows"
        page.click("#selection [data-action=unlike]")
        page.wait_for_selector("body[data-album='yellows:3:1']")
        assert albumstore.info(library, "yellows").negatives == (outsider_path,)
        page.wait_for_selector(".page-album .summary:has-text('1 unlike')")
        page.click(".examples .example.unlike button.remove")  # changed our mind: undo it
        page.wait_for_selector("body[data-album='yellows:3:0']")
        assert albumstore.info(library, "yellows").negatives == ()
        page.wait_for_selector(".page-album .summary:has-text('0 unlike')")
    finally:
        albumstore.delete(library, "yellows")


@pytest.fixture(scope="module")
def dup_server(tmp_path_factory, trained_model):
    from PIL import Image

    from tests.support.harness import index_in_process, isolated_settings

    home = tmp_path_factory.mktemp("web-duplicates")
    lib = build_shapes_library(home, trained_model, per_class=1)
    copies = home / "shapes" / "copies"
    copies.mkdir()
    exact = sorted(lib.of_class("green", "square"))[0]
    shutil.copy(exact, copies / "exact_copy.png")
    near = sorted(lib.of_class("purple", "star"))[0]
    Image.open(near).resize((96, 96), Image.Resampling.LANCZOS).save(copies / "near_copy.png")
    with isolated_settings(home, home / "cache", lib.path):
        index_in_process(home / "shapes", "--model", trained_model, "-q")
        app = make_app(lib, home)
        with serving(app) as url:
            yield (
                url,
                {exact, str(copies / "exact_copy.png")},
                {near, str(copies / "near_copy.png")},
            )
        app.state.web.close()


def test_the_duplicates_page_shows_groups_by_kind_and_exports_a_list(page, dup_server, shots):
    url, exact, near = dup_server
    page.goto(url + "/")
    page.click("nav a[href='/duplicates']")
    page.wait_for_selector(".group")
    groups = page.locator(".group")
    near_paths = [
        set(groups.nth(i).locator(".member").evaluate_all("ms => ms.map(m => m.dataset.path)"))
        for i in range(groups.count())
    ]
    assert near in near_paths
    for i in range(groups.count()):
        group = groups.nth(i)
        assert group.locator(".member.keeper").count() == 1
        assert "cosine" in group.locator(".evidence").first.inner_text()
    screenshot(page, shots, "web-duplicates.png")
    page.click(".kinds a[data-kind=exact]")
    page.wait_for_url("**/duplicates?kind=exact")
    group = page.locator(".group")
    assert group.count() == 1 and group.get_attribute("data-kind") == "exact"
    members = group.locator(".member")
    assert set(members.evaluate_all("ms => ms.map(m => m.dataset.path)")) == exact
    assert "hash 0" in group.inner_text()
    keeper = group.locator(".member.keeper").get_attribute("data-path")
    with page.expect_download() as info:
        page.click("#export-txt")
    assert Path(info.value.path()).read_text().splitlines() == sorted(exact - {keeper})
    with page.expect_download() as info:
        page.click("#export-json")
    exported = json.loads(Path(info.value.path()).read_text())
    assert exported["kind"] == "exact" and len(exported["groups"]) == 1
    assert all(Path(p).exists() for p in exact)  # exporting deletes nothing
