"""Settings: config.toml is complete and the layers override in the documented order."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from imgsearch import config
from imgsearch.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_config_toml_and_settings_list_the_same_keys():
    keys = set(tomllib.loads((ROOT / "config.toml").read_text()))
    assert keys == {f.name for f in dataclasses.fields(config.Settings)}


def test_every_setting_has_a_comment():
    lines = (ROOT / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"config.toml line {i + 1} lacks a comment"


def test_precedence_packaged_user_env_flags(tmp_path, monkeypatch):
    base = config.resolve(environ={})
    assert base.limit == 10
    user = tmp_path / "xdg-config" / "imgsearch" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("limit = 20\nbatch_size = 7\n")
    assert config.resolve(environ={}).limit == 20
    env = {"IMGSEARCH_LIMIT": "30"}
    s = config.resolve(environ=env)
    assert (s.limit, s.batch_size) == (30, 7)
    assert config.resolve(environ=env, overrides={"limit": 40, "model": None}).limit == 40


def test_explicit_config_file_replaces_the_user_file(tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('templates = "ensemble"\n')
    assert config.resolve(other, environ={}).templates == "ensemble"


def test_unknown_key_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("limt = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown setting 'limt'"):
        config.resolve(bad, environ={})


def test_bad_types_and_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="IMGSEARCH_LIMIT.*'limit' must be int"):
        config.resolve(environ={"IMGSEARCH_LIMIT": "many"})
    with pytest.raises(ConfigError, match="templates"):
        config.resolve(environ={"IMGSEARCH_TEMPLATES": "fancy"})
    bad = tmp_path / "bad.toml"
    bad.write_text("limit = [1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.resolve(bad, environ={})


def test_library_defaults_to_the_xdg_data_dir(tmp_path):
    s = config.resolve(environ={})
    assert s.library_path == tmp_path / "xdg-data" / "imgsearch" / "library"


def test_cli_reports_config_errors_cleanly(run, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    result = run("--config", bad, "stats", code=1)
    assert "unknown setting 'colour'" in result.stderr


# ---- errors name their source (issue 8) -------------------------------------------------------
def test_bad_values_name_the_file_or_variable(tmp_path):
    user = tmp_path / "xdg-config" / "imgsearch" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("limit = 0\n")
    with pytest.raises(ConfigError, match=rf"{user}: setting 'limit' must be at least 1"):
        config.resolve(environ={})
    user.unlink()
    with pytest.raises(ConfigError, match="environment variable IMGSEARCH_LIMIT: setting 'limit'"):
        config.resolve(environ={"IMGSEARCH_LIMIT": "0"})
    with pytest.raises(ConfigError, match="IMGSEARCH_TEMPLATES: setting 'templates'"):
        config.resolve(environ={"IMGSEARCH_TEMPLATES": "fancy"})
    with pytest.raises(ConfigError, match=r"command line \(--batch-size\)"):
        config.resolve(environ={}, overrides={"batch_size": 0})


def test_cli_names_the_variable_of_a_bad_value(run, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_LIMIT", "0")
    result = run("stats", code=1)
    assert "environment variable IMGSEARCH_LIMIT" in result.stderr


def test_a_library_path_that_is_a_file_is_one_clear_error(run, tmp_path, monkeypatch):
    file = tmp_path / "some-file"
    file.write_text("not a library")
    (tmp_path / "photos").mkdir()
    want = f"library path {file} is a file, not a folder"
    by_flag = run("stats", "--library", file, code=1).stderr
    assert want in by_flag and "--library" in by_flag
    conf = tmp_path / "conf.toml"
    conf.write_text(f'library = "{file}"\n')
    monkeypatch.delenv("IMGSEARCH_LIBRARY")  # the test's own library would win over the file
    by_file = run("--config", conf, "index", tmp_path / "photos", code=1).stderr
    assert want in by_file and str(conf) in by_file
    monkeypatch.setenv("IMGSEARCH_LIBRARY", str(file))
    for args in (["stats"], ["errors"], ["query", "x"], ["index", tmp_path / "photos"]):
        result = run(*args, code=1)
        assert want in result.stderr and "IMGSEARCH_LIBRARY" in result.stderr
        assert "index some photos first" not in result.stderr  # advice that cannot work


def test_searcher_on_a_file_says_so(tmp_path):
    from imgsearch import Searcher
    from imgsearch.errors import ImgsearchError

    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(ImgsearchError, match="is a file, not a folder"):
        Searcher(file)
