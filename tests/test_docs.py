"""The README documents every command and every setting (as sqlite-utils' tests/test_docs.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from imgsearch.cli import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_is_in_the_readme(command):
    """Read from the click group, so a command added anywhere needs its README line."""
    assert re.search(rf"imgsearch {re.escape(command)}\b", README), (
        f"README.md never shows `imgsearch {command}`"
    )


@pytest.mark.parametrize("setting", sorted(tomllib.loads((ROOT / "config.toml").read_text())))
def test_every_setting_is_in_the_readme(setting):
    assert f"`{setting}`" in README, f"README.md does not mention the setting `{setting}`"


def test_benchmarks_have_a_documented_install():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    bench = meta["project"]["optional-dependencies"]["bench"]
    assert any(req.startswith("psutil") for req in bench)
    for doc in (README, (ROOT / "benchmarks" / "README.md").read_text()):
        assert 'pip install -e ".[bench]"' in doc


def test_the_readme_demo_can_be_made_from_the_readme():
    assert "python -m tests.support.demo" in README
    assert "IMGSEARCH_LIBRARY" in README
