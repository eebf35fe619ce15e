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
    page.wait_for_url(f"**/photo/{first['id']}")
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
    page.wait_for_url(f"**/photo/{target}")
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
