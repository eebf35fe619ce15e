"""`imgsearch serve`: loopback by default, the URL on startup, a clean Ctrl-C, clear refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.web import free_port

# `python -m imgsearch.cli` runs cli.py as __main__, before the command modules register on the
# imported `imgsearch.cli`; the console script's entry point is what users run.
ENTRY = [sys.executable, "-c", "from imgsearch.cli import main; main()"]
URL = re.compile(r"at (http://\S+/) \(Ctrl-C stops\)")


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [*ENTRY, "serve", *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_url(proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if match := URL.search(line):
            return match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no URL printed; stderr: {proc.stderr.read()}")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_serve_prints_the_url_answers_and_stops_cleanly_on_ctrl_c(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    port = free_port()
    proc = start("--port", port)
    url = wait_url(proc)
    assert url == f"http://127.0.0.1:{port}/"
    with urllib.request.urlopen(url + "search.json?q=red&size=3") as response:
        data = json.load(response)
    assert len(data["hits"]) == 3
    code, err = stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert "server stopped" in err


def test_a_non_loopback_host_needs_public(run):
    result = run("serve", "--host", "0.0.0.0", code=2)
    assert "not a loopback address" in result.stderr
    assert "--public" in result.stderr


def test_public_warns_and_still_refuses_foreign_hosts(run, tiny_model, pictures):
    run("index", pictures[0].parent, "--model", tiny_model)
    port = free_port()
    proc = start("--host", "0.0.0.0", "--public", "--port", port)
    url = wait_url(proc)
    request = urllib.request.Request(url + "search.json", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 400
    code, stderr = stop(proc)
    assert code == 0
    assert "warning: serving" in stderr and "no login" in stderr
    assert "add --allow-host NAME" in stderr


def test_serve_without_a_library_says_how_to_make_one(run, isolated_env):
    result = run("serve", "--port", free_port(), code=1)
    assert f"no library at {isolated_env}" in result.stderr
    assert "imgsearch index PATH" in result.stderr


def test_serve_help_imports_no_web_or_model_stack():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom imgsearch.cli import cli\n"
        "r = CliRunner().invoke(cli, ['serve', '--help'])\n"
        "heavy = ('torch', 'open_clip', 'faiss', 'starlette', 'uvicorn', 'jinja2', 'PIL')\n"
        "print(r.exit_code, sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


def test_open_opens_the_printed_url_in_the_browser(run, tiny_model, pictures, tmp_path):
    """--open hands the URL it printed to `webbrowser`; $BROWSER stands in for the browser."""
    run("index", pictures[0].parent, "--model", tiny_model)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BROWSER": f"{browser} %s"}
    env.pop("DISPLAY", None)  # no desktop browser may take precedence over $BROWSER
    proc = subprocess.Popen(
        [*ENTRY, "serve", "--port", str(free_port()), "--open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = wait_url(proc)
    deadline = time.monotonic() + 20
    while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    code, err = stop(proc)
    assert opened.read_text() == url
    assert code == 0, err


def test_without_open_no_browser_is_started(run, tiny_model, pictures, tmp_path):
    run("index", pictures[0].parent, "--model", tiny_model)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\ntouch {opened}\n")
    browser.chmod(0o755)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BROWSER": f"{browser} %s"}
    proc = subprocess.Popen(
        [*ENTRY, "serve", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = wait_url(proc)
    with urllib.request.urlopen(url + "search.json?q=red&size=1") as response:
        assert response.status == 200
    code, _ = stop(proc)
    assert code == 0 and not opened.exists()
