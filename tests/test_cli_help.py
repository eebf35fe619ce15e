"""`imgsearch` alone and `--help`: help on stdout, the packaged defaults shown."""

from __future__ import annotations

import subprocess

from imgsearch import config
from tests.support.harness import cli_argv


def test_bare_imgsearch_prints_help_on_stdout_and_succeeds():
    result = subprocess.run(cli_argv(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ") and "Commands:" in result.stdout
    assert result.stderr == ""


def test_help_shows_the_packaged_defaults(run):
    defaults = config.packaged_defaults()
    index_help = " ".join(run("index", "--help").stdout.split())
    for key in ("model", "pretrained", "batch_size", "device", "workers", "decode"):
        assert f"[default: {defaults[key]}]" in index_help, key
    query_help = " ".join(run("query", "--help").stdout.split())
    for key in ("limit", "min_score", "templates"):
        assert f"[default: {defaults[key]}]" in query_help, key
    assert f"[default: {defaults['limit']}]" in " ".join(run("similar", "--help").stdout.split())


def test_help_defaults_follow_config_toml(monkeypatch, tmp_path):
    """The figures come from config.toml, not from a copy in the code."""
    assert config.packaged_defaults()["limit"] == config.resolve(environ={}).limit
    assert config.packaged_defaults()["model"] == config.resolve(environ={}).model
