"""The server is not a hole: files only by id and under indexed roots, a Host allow-list, POSTs
with the launch token and our Origin, upload caps and hostile uploads refused cleanly."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests.support.web import Opened, ShapesLibrary, make_app

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def lib(run, tiny_model, pictures, isolated_env):
    run("index", pictures[0].parent, "--model", tiny_model)
    return ShapesLibrary(isolated_env, [(p, "", "") for p in pictures], isolated_env.parent)


def client_for(app, base: str = BASE):
    from starlette.testclient import TestClient

    return TestClient(app, base_url=base, raise_server_exceptions=False)


@pytest.fixture
def app(lib, tmp_path):
    app = make_app(lib, tmp_path, overrides={"upload_max_mb": 1})
    yield app
    app.state.web.close()


@pytest.fixture
def client(app):
    with client_for(app) as c:
        yield c


def ids(lib: ShapesLibrary) -> dict[str, int]:
    with sqlite3.connect(lib.path / "library.db") as db:
        return {os.fsdecode(p): i for p, i in db.execute("SELECT path, id FROM images")}


def set_path(lib: ShapesLibrary, image_id: int, path: str) -> None:
    with sqlite3.connect(lib.path / "library.db") as db:
        db.execute("UPDATE images SET path = ? WHERE id = ?", (os.fsencode(path), image_id))


def assert_json_error(response, status: int, text: str = "") -> None:
    assert response.status_code == status, response.text
    assert text in response.json()["error"]
    assert "Traceback" not in response.text


# ---- path traversal ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/file/../../../../etc/passwd",
        "/file/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/file/..%2F..%2Fetc%2Fpasswd",
        "/file/-1",
        "/file/99999",
        "/file/1/../../etc/passwd",
        "/thumb/..%2f..%2fetc%2fpasswd/256",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_traversal_urls_never_reach_a_file(client, url):
    response = client.get(url)
    assert response.status_code == 404, (url, response.status_code)
    assert b"root:" not in response.content


def test_the_client_cannot_name_a_path(client, lib):
    first = sorted(ids(lib).items())[0]
    got = client.get(f"/file/{first[1]}", params={"path": "/etc/passwd"})
    assert got.status_code == 200 and got.content == Path(first[0]).read_bytes()


def test_a_stored_path_outside_the_indexed_roots_is_refused(client, lib):
    image_id = next(iter(ids(lib).values()))
    set_path(lib, image_id, "/etc/passwd")
    assert_json_error(client.get(f"/file/{image_id}"), 404, "outside the indexed folders")
    assert client.get(f"/thumb/{image_id}/256").status_code == 404


def test_a_stored_path_climbing_out_with_dots_is_refused(client, lib):
    path, image_id = sorted(ids(lib).items())[0]
    set_path(lib, image_id, os.path.join(os.path.dirname(path), "..", "..", "..", "etc", "passwd"))
    assert_json_error(client.get(f"/file/{image_id}"), 404, "outside the indexed folders")


def test_a_file_swapped_for_a_symlink_after_indexing_is_refused(client, lib, tmp_path):
    path, image_id = sorted(ids(lib).items())[0]
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    os.unlink(path)
    os.symlink(secret, path)
    assert_json_error(client.get(f"/file/{image_id}"), 404, "changed since it was indexed")
    assert b"not for the browser" not in client.get(f"/thumb/{image_id}/256").content


def test_a_deleted_file_is_404_with_the_fix(client, lib):
    path, image_id = sorted(ids(lib).items())[0]
    os.unlink(path)
    assert_json_error(client.get(f"/file/{image_id}"), 404, "run imgsearch index")


# ---- Host header (DNS rebinding) --------------------------------------------------------------
@pytest.mark.parametrize("url", ["/", "/search.json", "/file/1", "/static/app.js"])
def test_a_foreign_host_is_refused(app, url):
    with client_for(app, "http://evil.example:8000") as c:
        response = c.get(url)
    assert_json_error(response, 400, "host 'evil.example:8000' is not allowed")


@pytest.mark.parametrize("base", ["http://localhost:8000", "http://[::1]:8000", BASE])
def test_loopback_hosts_are_allowed(app, base):
    with client_for(app, base) as c:
        assert c.get("/search.json").status_code == 200


def test_allow_host_adds_a_name(lib, tmp_path):
    app = make_app(lib, tmp_path, allow_hosts=["nas.local"])
    with client_for(app, "http://nas.local:8000") as c:
        assert c.get("/search.json").status_code == 200
    with client_for(app, "http://other.local:8000") as c:
        assert c.get("/search.json").status_code == 400
    app.state.web.close()


# ---- POST endpoints: token and Origin ---------------------------------------------------------
def test_open_in_file_manager_needs_post_the_token_and_our_origin(client, app, lib):
    opened: Opened = app.state.opened
    path, image_id = sorted(ids(lib).items())[0]
    url = f"/api/open/{image_id}"
    token = app.state.web.token
    assert_json_error(client.get(url), 405, "POST only")
    assert_json_error(client.post(url), 403, "x-imgsearch-token")
    assert_json_error(client.post(url, headers={"x-imgsearch-token": "guess"}), 403, "wrong")
    foreign = {"x-imgsearch-token": token, "origin": "http://evil.example"}
    assert_json_error(client.post(url, headers=foreign), 403, "cross-origin")
    assert opened.paths == []
    ok = client.post(url, headers={"x-imgsearch-token": token, "origin": BASE})
    assert ok.status_code == 200 and ok.json()["opened"] == path
    assert opened.paths == [path]


def test_add_to_album_needs_post_the_token_and_our_origin(client, app, lib):
    import json

    from imgsearch.clip import albumstore

    url = "/api/albums/add"
    body = json.dumps({"album": "mine", "ids": sorted(ids(lib).values())[:2]})
    token = app.state.web.token
    assert_json_error(client.get(url), 405, "POST only")
    assert_json_error(client.post(url, content=body), 403, "x-imgsearch-token")
    wrong = {"x-imgsearch-token": "guess", "origin": BASE}
    assert_json_error(client.post(url, content=body, headers=wrong), 403, "wrong")
    foreign = {"x-imgsearch-token": token, "origin": "http://evil.example"}
    assert_json_error(client.post(url, content=body, headers=foreign), 403, "cross-origin")
    library = app.state.web.searcher.library
    assert albumstore.list_albums(library) == []  # nothing refused reached the library
    ok = client.post(url, content=body, headers={"x-imgsearch-token": token, "origin": BASE})
    assert ok.status_code == 200, ok.text
    assert [a.name for a in albumstore.list_albums(library)] == ["mine"]
    huge = client.post(
        url, content=b" " * (300 * 1024), headers={"x-imgsearch-token": token, "origin": BASE}
    )
    assert_json_error(huge, 413, "request larger than")


def test_the_page_embeds_the_launch_token(client, app):
    page = client.get("/", headers={"accept": "text/html"})
    assert f'<meta name="imgsearch-token" content="{app.state.web.token}">' in page.text


def test_open_refuses_a_file_outside_the_roots(client, app, lib):
    image_id = next(iter(ids(lib).values()))
    set_path(lib, image_id, "/etc/passwd")
    response = client.post(
        f"/api/open/{image_id}", headers={"x-imgsearch-token": app.state.web.token}
    )
    assert_json_error(response, 404, "outside the indexed folders")
    assert app.state.opened.paths == []


# ---- uploads ----------------------------------------------------------------------------------
def upload(client, app, data: bytes, *, multipart: bool = True, headers: dict | None = None):
    headers = {"x-imgsearch-token": app.state.web.token, **(headers or {})}
    if multipart:
        return client.post(
            "/api/example", files={"image": ("a.jpg", data, "image/jpeg")}, headers=headers
        )
    return client.post("/api/example", content=data, headers=headers)


def test_an_upload_without_the_token_is_refused(client):
    response = client.post("/api/example", content=b"x")
    assert_json_error(response, 403, "x-imgsearch-token")


@pytest.mark.parametrize("multipart", [True, False])
def test_an_oversized_upload_is_413(client, app, multipart):
    big = b"\xff\xd8" + os.urandom(1024 * 1024 + 10)
    assert_json_error(upload(client, app, big, multipart=multipart), 413, "upload_max_mb (1 MB)")


def test_an_oversized_upload_without_a_length_is_413(client, app):
    def chunks():
        for _ in range(40):
            yield os.urandom(64 * 1024)

    response = client.post(
        "/api/example", content=chunks(), headers={"x-imgsearch-token": app.state.web.token}
    )
    assert "content-length" not in response.request.headers
    assert_json_error(response, 413, "upload_max_mb")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"#!/bin/sh\nrm -rf /\n", "not an image"),
        (b"%PDF-1.4\n" + b"0" * 200, "unsupported format"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40, "corrupt or truncated"),
        (b"", "empty"),
    ],
)
def test_a_non_image_upload_is_400_with_the_decode_reason(client, app, data, reason):
    response = upload(client, app, data)
    assert_json_error(response, 400, reason)
    assert "/tmp" not in response.json()["error"]  # the server's temp path is not shown


def test_a_decompression_bomb_upload_is_refused_before_decoding(lib, tmp_path):
    from io import BytesIO

    from PIL import Image

    app = make_app(lib, tmp_path, overrides={"max_pixels": 10_000})
    buf = BytesIO()
    Image.new("RGB", (200, 200), "red").save(buf, "PNG")
    with client_for(app) as c:
        response = upload(c, app, buf.getvalue())
    app.state.web.close()
    assert_json_error(response, 400, "too large: 200x200")


def test_an_undecodable_file_name_is_served_and_shown_escaped(
    run, tiny_model, pictures, isolated_env, tmp_path
):
    odd = os.fsdecode(os.path.join(os.fsencode(pictures[0].parent), b"caf\xe9.png"))
    Path(odd).write_bytes(pictures[0].read_bytes())
    run("index", pictures[0].parent, "--model", tiny_model)
    lib = ShapesLibrary(isolated_env, [], isolated_env.parent)
    image_id = ids(lib)[odd]
    app = make_app(lib, tmp_path)
    with client_for(app) as c:
        data = c.get(f"/photo/{image_id}.json").json()
        assert data["path"].endswith("caf\\xe9.png") and data["path_bytes"]
        assert c.get(f"/file/{image_id}").content == pictures[0].read_bytes()
        assert c.get(f"/thumb/{image_id}/256").status_code == 200
        hits = c.get("/search.json", params={"similar": image_id - 1 or 2, "size": 200}).json()
        assert any(h["path"].endswith("caf\\xe9.png") for h in hits["hits"])
        page = c.get(f"/photo/{image_id}", headers={"accept": "text/html"})
        assert page.status_code == 200 and "caf\\xe9.png" in page.text
    app.state.web.close()
