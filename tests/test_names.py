"""File names are bytes: every name class is indexed, stored losslessly, shown escaped, and
usable again with `similar`, `--in`, `errors`, `--json` and `--null`."""

from __future__ import annotations

import base64
import json
import os
import unicodedata
from pathlib import Path

import pytest

from imgsearch.paths import display, json_fields
from tests.conftest import hits, make_pictures

KOREAN = "한글사진"
# name (bytes) -> what it stands for; each holds a distinct picture
NAMES: dict[bytes, str] = {
    b"caf\xe9.jpg": "Latin-1 (not valid UTF-8)",
    b"\x83e\x83X\x83g.png": "Shift-JIS (not valid UTF-8)",
    b"new\nline.png": "a newline",
    b"-leading-dash.png": "a leading dash",
    b"   ": "only spaces, no extension (sniffed)",
    b"a" * 251 + b".png": "255 bytes",
    unicodedata.normalize("NFC", KOREAN).encode() + b".png": "Korean, NFC",
    unicodedata.normalize("NFD", KOREAN).encode() + b".png": "Korean, NFD",
    b"trailing-dot.png.": "a trailing dot",
    b"tab\there.png": "a tab",
}
BAD_FOLDER = b"d\xf6ner"  # a folder whose name is not UTF-8 either


def _tree(root: Path) -> dict[bytes, Path]:
    """Write one picture per name class (plus two in a non-UTF-8 folder); returns name -> file."""
    pics = make_pictures(root / "src", len(NAMES) + 2, seed=3)
    out: dict[bytes, Path] = {}
    for name, pic in zip([*NAMES, b"one.png", b"two.png"], pics):
        parent = os.fsencode(root) if name not in (b"one.png", b"two.png") else None
        if parent is None:
            parent = os.path.join(os.fsencode(root), BAD_FOLDER)
            os.makedirs(parent, exist_ok=True)
        dest = os.path.join(parent, name)
        os.rename(os.fsencode(pic), dest)
        out[name] = Path(os.fsdecode(dest))
    os.rmdir(root / "src")
    return out


@pytest.fixture
def named(run, tiny_model, tmp_path) -> dict[bytes, Path]:
    files = _tree(tmp_path / "names")
    (tmp_path / "names" / "caf\udce9-broken.jpg").write_bytes(b"not a picture")
    result = run("index", tmp_path / "names", "--model", tiny_model)
    assert f"{len(files)} added" in result.stderr
    return files


def test_every_name_class_is_indexed_and_round_trips(run, named):
    found = hits(run("query", "a picture", "-k", "50", "--json"))
    exact = {base64.b64decode(h["path_bytes"]) if h["path_bytes"] else h["path"].encode()
             for h in found}  # fmt: skip
    assert exact == {os.fsencode(p) for p in named.values()}
    latin = next(
        h for h in found if h["path_bytes"] and b"caf\xe9" in base64.b64decode(h["path_bytes"])
    )
    assert latin["path"].endswith("caf\\xe9.jpg")  # escaped, printable, valid JSON text
    plain = next(h for h in found if h["path"].endswith("-leading-dash.png"))
    assert plain["path_bytes"] is None  # a valid UTF-8 name is its own exact form


def test_nfc_and_nfd_forms_are_two_files(run, named):
    found = hits(run("query", "a picture", "-k", "50", "--json"))
    korean = [h["path"] for h in found if KOREAN[0] in h["path"] or "\u1112" in h["path"]]
    assert len(korean) == 2 and len(set(korean)) == 2


def test_table_escapes_names_and_null_output_is_exact(run, named):
    table = run("query", "a picture", "-k", "50").stdout
    assert "new\\nline.png" in table and "caf\\xe9.jpg" in table
    rows = table.splitlines()
    assert len(rows) == len(named) + 1  # a newline in a name does not break a row
    raw = run("query", "a picture", "-k", "50", "--null").stdout_bytes
    assert set(raw.split(b"\0")[:-1]) == {os.fsencode(p) for p in named.values()}
    lines = run("query", "a picture", "-k", "50", "--paths").stdout_bytes
    assert os.fsencode(named[b"caf\xe9.jpg"]) + b"\n" in lines  # exact bytes, like find


def test_similar_and_in_work_on_undecodable_names(run, named):
    latin = named[b"caf\xe9.jpg"]
    found = hits(run("similar", str(latin), "-k", "50", "--json"))
    assert len(found) == len(named) - 1
    assert all(json_fields(str(latin))["path"] != h["path"] for h in found)
    folder = latin.parent / os.fsdecode(BAD_FOLDER)
    inside = hits(run("query", "a picture", "--in", str(folder), "--json"))
    assert sorted(h["path"] for h in inside) == sorted(
        display(str(named[n])) for n in (b"one.png", b"two.png")
    )


def test_errors_show_an_undecodable_name_escaped(run, named):
    listed = json.loads(run("errors", "--json").stdout)
    assert [e["path"].rsplit("/", 1)[1] for e in listed] == ["caf\\xe9-broken.jpg"]
    assert base64.b64decode(listed[0]["path_bytes"]).endswith(b"caf\xe9-broken.jpg")
    assert "caf\\xe9-broken.jpg" in run("errors").stdout


def test_skip_line_names_the_file_escaped(run, tiny_model, tmp_path):
    folder = tmp_path / "skips"
    make_pictures(folder, 2)
    (folder / "bad\udcff\n.jpg").write_bytes(b"junk")
    result = run("index", folder, "--model", tiny_model)
    assert "skipping " in result.stderr and "bad\\xff\\n.jpg: not an image" in result.stderr
    assert "2 added" in result.stderr


def test_display_escapes_only_what_cannot_be_shown():
    assert display("/p/Café 한글.jpg") == "/p/Café 한글.jpg"
    assert display(os.fsdecode(b"/p/caf\xe9\x07.jpg")) == "/p/caf\\xe9\\x07.jpg"
