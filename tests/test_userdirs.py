"""imgsearch's per-user folders are platformdirs' (read without importing it on Linux)."""

from __future__ import annotations

import sys

import platformdirs
import pytest

from imgsearch.userdirs import user_dir

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG rule")
KINDS = {"config": "XDG_CONFIG_HOME", "data": "XDG_DATA_HOME", "cache": "XDG_CACHE_HOME"}


@linux_only
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("setting", ["unset", "empty", "absolute", "relative"])
def test_the_same_folders_as_platformdirs(kind, setting, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    var = KINDS[kind]
    value = {"empty": "", "absolute": str(tmp_path / "xdg"), "relative": "rel/xdg"}.get(setting)
    if value is None:
        monkeypatch.delenv(var, raising=False)
    else:
        monkeypatch.setenv(var, value)
    expected = getattr(platformdirs, f"user_{kind}_path")("imgsearch")
    assert user_dir(kind) == expected
    # only an absolute setting counts (XDG: unset, empty and relative ones are ignored)
    base = value if setting == "absolute" else str(tmp_path / "home")
    assert user_dir(kind).parent.as_posix().startswith(base)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown user folder 'logs'"):
        user_dir("logs")
