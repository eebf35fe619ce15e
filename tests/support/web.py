"""The web tests' world: a library of the trained tiny model's shapes, the app over it, a real
server on a free loopback port, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import index_in_process, isolated_settings
from tests.support.shapes import write_pictures

CHROMIUM = os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PER_CLASS = 6  # 120 PNGs + 20 JPEGs (one per class, for ext: filters): three pages of 48


@dataclass
class ShapesLibrary:
    """An indexed library of coloured shapes: its folder, the pictures and their classes."""

    path: Path
    pictures: list[tuple[Path, str, str]]
    home: Path

    def of_class(self, color: str, shape: str) -> set[str]:
        return {str(p) for p, c, s in self.pictures if (c, s) == (color, shape)}


@dataclass
class Opened:
    """An opener that records instead of launching a file manager."""

    paths: list[str] = field(default_factory=list)

    def __call__(self, path: str) -> None:
        self.paths.append(path)


def build_shapes_library(home: Path, model: str, per_class: int = PER_CLASS) -> ShapesLibrary:
    library = home / "library"
    with isolated_settings(home, home / "cache", library):
        pictures = write_pictures(home / "shapes", per_class=per_class, seed=7)
        pictures += write_pictures(home / "shapes" / "jpg", per_class=1, seed=11, fmt="jpg")
        index_in_process(home / "shapes", "--model", model)
    return ShapesLibrary(library, pictures, home)


def make_app(
    lib: ShapesLibrary, tmp: Path, overrides: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    """The app over `lib`, thumbnails in `tmp`, a recording opener (unless given)."""
    from imgsearch import config
    from imgsearch.web import create_app

    kwargs.setdefault("opener", Opened())
    settings = config.resolve(overrides={"library": str(lib.path), **(overrides or {})})
    app = create_app(lib.path, settings, thumbs_dir=tmp / "thumbs", **kwargs)
    app.state.opened = kwargs["opener"]
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1 in a thread; yields its base URL, stops after."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def require_chromium() -> None:
    """Skip without the browser, except in CI (CI=true), where a missing browser fails."""
    if Path(CHROMIUM).exists():
        return
    message = f"chromium not found at {CHROMIUM}: run .ci/install-browser.sh"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (Playwright over the system binary) with a fresh profile."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="imgsearch-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1280, "height": 800},
                accept_downloads=True,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
