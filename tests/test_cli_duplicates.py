"""`imgsearch duplicates`: exact and near copies grouped with a keeper and evidence; the
library and the files are never changed."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from PIL import Image

from imgsearch.library import Library
from tests.conftest import make_pictures


@pytest.fixture
def copies(run, tiny_model, tmp_path):
    folder = tmp_path / "pics"
    pics = make_pictures(folder, 6, size=96)
    shutil.copy2(pics[0], folder / "exact-copy.png")
    with Image.open(pics[1]) as im:
        im.resize((64, 64)).save(folder / "smaller.jpg", quality=70)
    run("index", folder, "--model", tiny_model)
    return folder, pics


def test_exact_copies_form_one_group_with_the_evidence(run, copies):
    folder, pics = copies
    groups = json.loads(run("duplicates", "--kind", "exact", "--json").stdout)
    assert len(groups) == 1
    paths = {m["path"] for m in groups[0]["members"]}
    assert paths == {str(pics[0]), str(folder / "exact-copy.png")}
    assert all(m["hash_distance"] == 0 for m in groups[0]["members"])


def test_a_resized_reencoded_copy_is_a_near_duplicate_and_the_bigger_is_kept(run, copies):
    folder, pics = copies
    groups = json.loads(run("duplicates", "--kind", "near", "--json").stdout)
    pair = next(
        g for g in groups if any(m["path"] == str(folder / "smaller.jpg") for m in g["members"])
    )
    keeper = next(m for m in pair["members"] if m["id"] == pair["keeper"])
    assert keeper["path"] == str(pics[1])
    assert {m["path"] for m in pair["members"]} == {str(pics[1]), str(folder / "smaller.jpg")}
    table = run("duplicates")
    assert "keep" in table.stdout and "nothing was deleted" in table.stderr


def test_paths_lists_the_copies_and_nothing_changes(run, copies, isolated_env):
    folder, _ = copies
    before = sorted(os.listdir(folder))
    with Library.open(isolated_env) as lib:
        count = lib.count()
    out = run("duplicates", "--kind", "exact", "--paths").stdout_bytes.split(b"\n")
    assert len([p for p in out if p]) == 1
    assert sorted(os.listdir(folder)) == before
    with Library.open(isolated_env) as lib:
        assert lib.count() == count
    assert (
        run("duplicates", "--in", folder / "..", "--kind", "exact", "--json").stdout.strip() != "[]"
    )
