"""Capture the README's examples of the web API from a real server (nothing typed by hand).

    IMGSEARCH_TEST_CACHE=/tmp/imgsearch-test-cache python -m tests.support.capture_web_api \
        docs/web-api.md [/tmp/demo-web]

Builds the tiny trained model's library of shapes (plus an exact and a resized copy, tags from
the 20 class names), serves it with uvicorn on 127.0.0.1:8000 (or a free port) and records
each request and its answer. Long lists are cut to their first entries, as the text says.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from PIL import Image

SHOWN = 2  # entries kept of a long list


WHOLE = ("facets", "kinds", "grid")  # lists shown in full (and lists of numbers)


def _cut(value: Any, key: str = "") -> Any:
    if isinstance(value, list):
        whole = key in WHOLE or all(isinstance(v, (int, float, list)) for v in value)
        return [_cut(v, key) for v in (value if whole else value[:SHOWN])]
    if isinstance(value, dict):
        return {k: _cut(v, k) for k, v in value.items()}
    return value


def _port() -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8000))
            return 8000
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def main(out: Path, home: Path) -> None:
    from imgsearch.cli import cli
    from tests.support.harness import index_in_process, isolated_settings
    from tests.support.shapes import CLASSES, caption
    from tests.support.tinyclip import train_tiny_clip
    from tests.support.web import build_shapes_library, make_app, serving

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    model = "local-dir:" + str(train_tiny_clip(Path(tempfile.mkdtemp(prefix="tiny-clip-"))))
    lib = build_shapes_library(home, model, per_class=2)
    copies = home / "shapes" / "copies"
    copies.mkdir()
    shutil.copy(sorted(lib.of_class("green", "square"))[0], copies / "green_square_copy.png")
    Image.open(sorted(lib.of_class("red", "star"))[0]).resize((96, 96)).save(
        copies / "red_star_resized.png"
    )
    labels = home / "classes.toml"
    labels.write_text(f"exclusive = true\nlabels = {json.dumps([caption(*c) for c in CLASSES])}\n")
    blocks: list[str] = []
    with isolated_settings(home, home / "cache", lib.path):
        index_in_process(home / "shapes", "--model", model, "-q")
        assert CliRunner().invoke(cli, ["tag", "--labels", str(labels)]).exit_code == 0
        app = make_app(lib, home)
        token = app.state.web.token
        base = ""

        def call(path: str, body: dict | None = None, *, headers: dict | None = None) -> Any:
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(base + path, data=data, headers=headers or {})
            try:
                with urllib.request.urlopen(req) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as err:
                return err.code, err.headers, err.read()

        def show(title: str, path: str, body: dict | None = None, auth: bool = False) -> Any:
            headers = {}
            curl = f"curl -s '{base}{path}'"
            if body is not None:
                headers["Content-Type"] = "application/json"
                if auth:
                    headers["X-Imgsearch-Token"] = token
                    curl += ' -H "X-Imgsearch-Token: $TOKEN"'
                curl += f" -H 'Content-Type: application/json' -d '{json.dumps(body)}'"
            status, head, raw = call(path, body, headers=headers)
            kind = head.get("content-type", "")
            if "json" in kind:
                data = json.loads(raw)
                text = json.dumps(_cut(data), indent=2, ensure_ascii=False)
                curl += " | python -m json.tool"
            elif kind.startswith("text/"):
                data, text = raw.decode(), raw.decode().rstrip("\n")
            else:
                data, text = raw, f"({status}, {kind}, {len(raw)} bytes)"
            blocks.append(f"{title} (HTTP {status}):\n\n```console\n$ {curl}\n{text}\n```\n")
            return data

        with serving(app, _port()) as url:
            base = url
            first = json.loads(call("/search.json?q=a+red+star&size=2")[2])
            show(
                "The filter panel's data: every facet value with its count and the query that "
                "adds its filter (`active` ones remove it)",
                "/facets.json?q=a+red+star",
            )
            show(
                "Duplicates of one kind (exact, near, similar), keeper first",
                "/duplicates.json?kind=exact",
            )
            show("The list to review: the photos that are not keepers", "/duplicates.txt?kind=near")
            show("Tags with counts and the search of each", "/tags.json")
            ids = [h["id"] for h in first["hits"]]
            show(
                "Add photos to an album as like (a new album is created) - without the token",
                "/api/albums/add",
                {"album": "red stars", "ids": ids},
            )
            show(
                'The same with the page\'s token (`<meta name="imgsearch-token">`)',
                "/api/albums/add",
                {"album": "red stars", "ids": ids},
                auth=True,
            )
            blue = call("/search.json?q=a+blue+star&size=1")[2]
            show(
                "Refine it with an unlike example",
                "/api/albums/add",
                {"album": "red stars", "ids": [json.loads(blue)["hits"][0]["id"]], "as": "unlike"},
                auth=True,
            )
            show(
                "Remove an example (the album keeps at least one like)",
                "/api/albums/remove",
                {"album": "red stars", "ids": [ids[1]]},
                auth=True,
            )
            show("Albums", "/albums.json")
            show("One album: its examples and photos, best first", "/albums/red%20stars.json")
            pid = ids[0]
            show(
                "A photo with the search's query: its tags, albums and heatmap URLs",
                f"/photo/{pid}.json?q=a+red+star",
            )
            show(
                "The heatmap as data (an 8 x 8 grid over the part the model saw)",
                f"/photo/{pid}/explain.json?q=a+red+star",
            )
            show("The overlay itself", f"/photo/{pid}/explain.png?q=a+red+star")
        app.state.web.close()
    out.write_text(
        "# Web API examples (captured)\n\n"
        f"Made by `python -m tests.support.capture_web_api` against a real `imgsearch serve` app "
        f"over the tiny trained model's shapes in `{home}` (lists cut to {SHOWN} entries; "
        "`$TOKEN` is the per-launch token each page embeds).\n\n" + "\n".join(blocks)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/demo-web"))
