"""`imgsearch duplicates`: exact and near copies grouped with a keeper and evidence; the
library and the files are never changed."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
from PIL import Image

from imgsearch.library import DB_NAME, SCHEMA_HEAD, Library
from imgsearch.paths import from_key
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


def _decodes(monkeypatch) -> list[str]:
    """The files `duplicates` decodes for a perceptual hash (it should need none)."""
    from imgsearch import duplicates

    read: list[str] = []
    real = duplicates.perceptual_hash

    def counting(path):
        read.append(path)
        return real(path)

    monkeypatch.setattr(duplicates, "perceptual_hash", counting)
    return read


def test_index_stores_perceptual_hashes_so_duplicates_decodes_nothing(
    run, copies, isolated_env, monkeypatch
):
    from imgsearch.photohash import hash_distance, perceptual_hash, unpack

    folder, pics = copies
    con = sqlite3.connect(isolated_env / DB_NAME)
    stored = {from_key(k): unpack(v) for k, v in con.execute("SELECT path, phash FROM images")}
    assert len(stored) == 8 and all(h is not None for h in stored.values())
    for path, h in stored.items():  # the decoder's hash is the picture's, read either way
        assert hash_distance(h, perceptual_hash(path)) <= 4, path
    read = _decodes(monkeypatch)
    groups = json.loads(run("duplicates", "--kind", "near", "--json").stdout)
    assert read == []
    assert {str(pics[1]), str(folder / "smaller.jpg")} in [
        {m["path"] for m in g["members"]} for g in groups
    ]


def _downgrade(db, revision: str) -> None:
    """Take a library's database down to `revision` with the shipped migrations' downgrades."""
    import sqlalchemy as sa
    from alembic import command

    from imgsearch import migrate

    cfg, _ = migrate._script()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        try:
            command.downgrade(cfg, revision)
        finally:
            cfg.attributes.pop("connection", None)
    engine.dispose()


def test_a_0006_library_gets_its_hashes_on_the_next_index(run, copies, isolated_env, monkeypatch):
    folder, pics = copies
    with_hashes = json.loads(run("duplicates", "--kind", "near", "--json").stdout)
    _downgrade(isolated_env / DB_NAME, "0006")  # the migrations' own way back: no phash column
    con = sqlite3.connect(isolated_env / DB_NAME)
    con.execute("UPDATE images SET meta_version = 1")  # and metadata from reader version 1
    con.commit()
    before = dict(con.execute("SELECT id, vector_gen FROM images"))
    read = _decodes(monkeypatch)
    assert json.loads(run("duplicates", "--kind", "near", "--json").stdout) == with_hashes
    assert len(read) == 8  # migrated: the column is there, empty, so every photo was read
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (SCHEMA_HEAD,)
    result = run("index")
    assert "0 added, 0 updated" in result.stderr and "reading photo metadata of 8" in result.stderr
    assert dict(con.execute("SELECT id, vector_gen FROM images")) == before  # nothing embedded
    assert con.execute("SELECT count(*) FROM images WHERE length(phash) = 80").fetchone() == (8,)
    read.clear()
    assert json.loads(run("duplicates", "--kind", "near", "--json").stdout) == with_hashes
    assert read == []
