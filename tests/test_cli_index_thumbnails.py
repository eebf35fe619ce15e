"""`imgsearch index --thumbnails`: the grid thumbnails made at index time, into the cache that
`imgsearch serve` reads, so the first grid needs no decoding."""

from __future__ import annotations

import re

import pytest

from imgsearch import thumbs


def test_index_thumbnails_fills_the_cache_serve_reads(run, tiny_model, pictures, isolated_env):
    result = run("index", pictures[0].parent, "--model", tiny_model, "--thumbnails")
    made = rf"thumbnails: {len(pictures)} made, 0 already cached, 0 failed"
    assert re.search(made, result.stderr)
    again = run("index", "--thumbnails")
    assert f"thumbnails: 0 made, {len(pictures)} already cached, 0 failed" in again.stderr

    from starlette.testclient import TestClient

    from imgsearch import config
    from imgsearch.web import create_app

    def no_decoding(*args, **kwargs):
        raise AssertionError("the thumbnail should have been made by index --thumbnails")

    settings = config.resolve(overrides={"library": str(isolated_env)})
    app = create_app(isolated_env, settings, opener=lambda p: None)  # serve's default cache
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(thumbs, "render", no_decoding)
            with TestClient(app, base_url="http://127.0.0.1:8000") as client:
                hits = client.get("/search.json", params={"q": "red", "size": 50}).json()["hits"]
                assert len(hits) == len(pictures)
                for h in hits:
                    got = client.get(h["thumb"])
                    assert got.status_code == 200 and got.headers["content-type"] == "image/webp"
    finally:
        app.state.web.close()


def test_without_the_flag_no_thumbnails_are_made(run, tiny_model, pictures, isolated_env):
    result = run("index", pictures[0].parent, "--model", tiny_model)
    assert "thumbnails:" not in result.stderr
    from imgsearch.library import Library

    with Library.open(isolated_env) as lib:
        folder = thumbs.default_folder(lib.path)
    assert not list(folder.glob("*/*.webp"))
