"""The library knows its folders: `folders`, `index` with no path, `forget`, and roots that
are renamed, deleted or unplugged (kept, reported, left out of results, moves on rename)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imgsearch.library import DB_NAME
from tests.conftest import hits, make_pictures
from tests.support.harness import tmpfs


def _folders(run) -> list[dict]:
    return json.loads(run("folders", "--json").stdout)


@pytest.fixture
def two_roots(run, tiny_model, tmp_path) -> tuple[Path, Path]:
    a, b = tmp_path / "pics" / "a", tmp_path / "pics" / "b"
    make_pictures(a, 3, seed=1)
    make_pictures(b, 2, seed=2)
    run("index", a, b, "--model", tiny_model)
    return a, b


def test_folders_lists_roots_with_counts_and_time(run, two_roots):
    a, b = two_roots
    listed = _folders(run)
    assert [(f["path"], f["images"], f["status"]) for f in listed] == [
        (str(a), 3, "ok"),
        (str(b), 2, "ok"),
    ]
    assert all(f["indexed_at"] for f in listed)
    table = run("folders").stdout.splitlines()
    assert table[0].split() == ["folder", "images", "failed", "last", "indexed", "status"]
    assert table[1].startswith(str(a)) and " 3 " in table[1]


def test_index_with_no_path_indexes_every_root(run, two_roots):
    a, b = two_roots
    make_pictures(a / "new", 1, seed=5)
    make_pictures(b / "new", 1, seed=6)
    result = run("index")
    assert "2 added" in result.stderr and "5 unchanged" in result.stderr


def test_index_with_no_path_and_no_library_is_a_usage_error(run, isolated_env):
    result = run("index", code=2)
    assert "give the folders to index" in result.stderr
    assert not isolated_env.exists()


def test_forget_a_root_removes_its_images(run, two_roots):
    a, b = two_roots
    result = run("forget", a)
    assert "3 images removed" in result.stderr
    assert [f["path"] for f in _folders(run)] == [str(b)]
    found = hits(run("query", "x", "-k", "10", "--json"))
    assert {Path(h["path"]).parent for h in found} == {b}
    assert "0 added" in run("index").stderr  # the forgotten root is not indexed again


def test_forget_a_folder_inside_a_root_keeps_it_out(run, tiny_model, tmp_path):
    root = tmp_path / "pics"
    make_pictures(root, 2, seed=1)
    make_pictures(root / "screenshots", 3, seed=2)
    run("index", root, "--model", tiny_model)
    assert "3 images removed" in run("forget", root / "screenshots").stderr
    assert len(hits(run("query", "x", "-k", "10", "--json"))) == 2
    again = run("index")
    assert "0 added" in again.stderr and "2 unchanged" in again.stderr
    statuses = {f["path"]: f["status"] for f in _folders(run)}
    assert statuses[str(root / "screenshots")] == "excluded"
    assert "3 added" in run("index", root / "screenshots").stderr  # asked for by name: back


def test_forget_an_unknown_folder_is_an_error(run, two_roots, tmp_path):
    result = run("forget", tmp_path / "elsewhere", code=1)
    assert "is not one of the library's folders" in result.stderr


def test_a_renamed_root_is_kept_then_found_as_moves(run, two_roots):
    a, b = two_roots
    renamed = a.parent / "a-renamed"
    os.rename(a, renamed)
    result = run("index")
    assert f"folder {a} is not there" in result.stderr and "keeping its 3 photos" in result.stderr
    assert "0 removed" in result.stderr
    query = run("query", "x", "-k", "10", "--json")
    assert {Path(h["path"]).parent for h in hits(query)} == {b}  # gone files are not shown
    assert f"note: 3 photos under {a} are left out" in query.stderr
    assert {f["path"]: f["status"] for f in _folders(run)}[str(a)].startswith("is not there")
    moved = run("index", renamed)
    assert "3 moved" in moved.stderr and "0 added" in moved.stderr
    assert f"{a} is gone; its photos were found under {renamed}" in moved.stderr
    assert [f["path"] for f in _folders(run)] == [str(renamed), str(b)]
    assert len(hits(run("query", "x", "-k", "10", "--json"))) == 5


def test_an_unmounted_drive_keeps_its_entries_until_it_is_back(run, tiny_model, tmp_path):
    drive = tmp_path / "drive"
    with tmpfs(drive, "16m"):
        make_pictures(drive / "photos", 3, seed=1)
        shutil.copytree(drive, tmp_path / "backup", copy_function=shutil.copy2)
        run("index", drive, "--model", tiny_model)
    # unmounted: the mount point is an empty folder of the parent's filesystem
    assert drive.is_dir() and not any(drive.iterdir())
    result = run("index")
    assert "looks unmounted" in result.stderr and "0 removed" in result.stderr
    assert hits(run("query", "x", "--json")) == []
    with tmpfs(drive, "16m"):
        subprocess.run(["cp", "-a", f"{tmp_path / 'backup'}/.", str(drive)], check=True)
        back = run("index")
        assert "3 unchanged" in back.stderr and "0 added" in back.stderr
        assert len(hits(run("query", "x", "--json"))) == 3


def test_an_emptied_root_on_its_own_device_is_emptied(run, two_roots):
    a, _ = two_roots
    for pic in a.iterdir():
        pic.unlink()
    assert "3 removed" in run("index").stderr


def test_library_inside_the_photo_folder_is_refused(run, tiny_model, tmp_path):
    pics = tmp_path / "pics"
    make_pictures(pics, 2)
    result = run("index", pics, "--model", tiny_model, "--library", pics, code=1)
    assert "is not an imgsearch library and is not empty" in result.stderr
    result = run("index", pics, "--model", tiny_model, "--library", pics / "library", code=1)
    assert "would be inside the photo folder" in result.stderr
    assert sorted(p.name for p in pics.iterdir()) == ["pic_000.png", "pic_001.png"]


def test_library_in_a_folder_with_other_files_is_refused(run, tiny_model, tmp_path):
    pics, other = tmp_path / "pics", tmp_path / "documents"
    make_pictures(pics, 1)
    other.mkdir()
    (other / "letter.txt").write_text("hello")
    result = run("index", pics, "--model", tiny_model, "--library", other, code=1)
    assert "is not an imgsearch library and is not empty" in result.stderr
    assert not (other / DB_NAME).exists()


def test_allow_nested_keeps_the_library_out_of_the_index(run, tiny_model, tmp_path):
    pics = tmp_path / "pics"
    make_pictures(pics, 2)
    lib = pics / ".lib-visible"
    result = run("index", pics, "--model", tiny_model, "--library", lib, "--allow-nested")
    assert "2 added" in result.stderr
    paths = {h["path"] for h in hits(run("query", "x", "--json", "--library", lib))}
    assert all(not p.startswith(str(lib)) for p in paths) and len(paths) == 2
