"""One identity per file: however a folder or file is spelled or reached, it is one entry;
byte-identical copies are two entries sharing one embedding; indexed files are not re-embedded
to query by them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.library import Library
from tests.conftest import hits, make_pictures
from tests.test_lazy_imports import PROBE


@pytest.fixture
def tree(tmp_path) -> Path:
    make_pictures(tmp_path / "photos", 6)
    return tmp_path / "photos"


def _paths(isolated_env: Path) -> list[str]:
    with Library.open(isolated_env) as lib:
        return sorted(p for p, k in lib.known_files().items() if k.status == "ok")


def test_a_folder_by_symlink_or_relative_path_is_not_added_twice(
    run, tiny_model, tree, tmp_path, isolated_env, monkeypatch
):
    run("index", tree, "--model", tiny_model)
    os.symlink(tree, tmp_path / "alias")
    again = run("index", tmp_path / "alias")
    assert "0 added" in again.stderr and "6 unchanged" in again.stderr
    monkeypatch.chdir(tmp_path)
    assert "6 unchanged" in run("index", "photos").stderr
    assert len(_paths(isolated_env)) == 6
    found = hits(run("query", "x", "-k", "20", "--json"))
    assert len(found) == 6 and len({h["path"] for h in found}) == 6
    assert len(hits(run("query", "x", "--json", "--in", tree.resolve()))) == 6
    assert len(hits(run("query", "x", "--json", "--in", tmp_path / "alias"))) == 6


def test_similar_never_returns_the_file_itself_through_a_symlink(run, tiny_model, tree, tmp_path):
    os.symlink(tree, tmp_path / "alias")
    run("index", tmp_path / "alias", "--model", tiny_model)
    first = sorted(tree.iterdir())[0]
    found = hits(run("similar", tmp_path / "alias" / first.name, "-k", "20", "--json"))
    assert str(first) not in {h["path"] for h in found} and len(found) == 5


def test_a_symlink_inside_a_root_to_a_file_in_it_is_one_entry(run, tiny_model, tree, isolated_env):
    os.symlink(tree / "pic_000.png", tree / "link.png")
    result = run("index", tree, "--model", tiny_model)
    assert "6 added" in result.stderr
    assert str(tree / "link.png") not in _paths(isolated_env)


def test_a_file_under_two_roots_is_one_entry(run, tiny_model, tmp_path, isolated_env):
    tree = tmp_path / "outer" / "photos"
    make_pictures(tree, 6)
    run("index", tree, tree / "pic_001.png", "--model", tiny_model)
    run("index", tree.parent)  # a root holding the first one
    assert len(_paths(isolated_env)) == 6
    listed = run("folders", "--json").stdout
    assert str(tree) in listed and str(tree.parent) in listed


def test_byte_identical_copies_are_two_entries_sharing_one_embedding(
    run, tiny_model, tree, isolated_env
):
    run("index", tree, "--model", tiny_model)
    (tree / "copies").mkdir()
    shutil.copy2(tree / "pic_002.png", tree / "copies" / "same.png")
    shutil.copy2(tree / "pic_002.png", tree / "copies" / "same-again.png")
    result = run("index", tree)
    assert "2 added" in result.stderr
    assert "2 byte-identical copies reused a vector" in result.stderr
    with Library.open(isolated_env) as lib:
        vec = {p: lib.vector_for_path(p)[1] for p in _paths(isolated_env)}
    original = vec[str(tree / "pic_002.png")]
    assert np.array_equal(vec[str(tree / "copies" / "same.png")], original)
    assert np.array_equal(vec[str(tree / "copies" / "same-again.png")], original)


def test_copies_new_in_one_batch_are_embedded_once(run, tiny_model, tmp_path):
    folder = tmp_path / "dupes"
    make_pictures(folder, 3)
    for i in range(3):
        shutil.copy2(folder / "pic_000.png", folder / f"copy_{i}.png")
    result = run("index", folder, "--model", tiny_model)
    assert "6 added" in result.stderr and "3 byte-identical copies" in result.stderr


def test_same_size_and_partial_hash_but_different_content_is_embedded(
    run, tiny_model, tmp_path, isolated_env
):
    """Two files equal in size, first and last 64 KiB, differing in the middle: not copies."""
    folder = tmp_path / "lookalike"
    folder.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(big).save(folder / "a.bmp")
    data = bytearray((folder / "a.bmp").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes(3000)
    (folder / "b.bmp").write_bytes(bytes(data))
    result = run("index", folder, "--model", tiny_model)
    assert "2 added" in result.stderr and "reused" not in result.stderr


@pytest.mark.parametrize("command", ["similar", "query"])
def test_querying_by_an_indexed_file_uses_its_stored_vector(
    run, tiny_model, tree, isolated_env, command
):
    run("index", tree, "--model", tiny_model)
    args = ["similar", str(tree / "pic_000.png")]
    if command == "query":
        args = ["query", "--image", str(tree / "pic_000.png")]
    code = PROBE.format(args=[*args, "--library", str(isolated_env), "--json"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_a_changed_file_is_embedded_again_to_query_by_it(run, tiny_model, tree, isolated_env):
    run("index", tree, "--model", tiny_model)
    target = tree / "pic_000.png"
    make_pictures(tree / "other", 1, seed=99)
    shutil.copyfile(tree / "other" / "pic_000.png", target)  # new content, new mtime
    from imgsearch import Searcher

    with Searcher() as s:
        fresh = s.embed_image(target)
        with Library.open(isolated_env) as lib:
            stored = lib.vector_for_path(str(target))[1]
        assert not np.allclose(fresh, stored)
