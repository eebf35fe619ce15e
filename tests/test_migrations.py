"""Schema migrations: head matches the code; old libraries upgrade; newer ones are refused."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from imgsearch import migrate
from imgsearch.errors import LibraryError
from imgsearch.library import DB_NAME, SCHEMA_HEAD, Library


def test_schema_head_constant_matches_alembic():
    assert migrate.head() == SCHEMA_HEAD


def test_library_at_first_revision_is_migrated_and_keeps_its_data(tmp_path):
    db = tmp_path / DB_NAME
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        migrate.upgrade(conn, "0001")
        conn.exec_driver_sql(
            "INSERT INTO images (path, size, mtime_ns, fingerprint, status, vector, indexed_at) "
            "VALUES ('/p/a.jpg', 10, 5, 'abc', 'ok', x'0000803f', '2026-01-01')"
        )
        conn.exec_driver_sql("INSERT INTO meta VALUES ('generation', '1')")
    engine.dispose()
    with Library.open(tmp_path) as lib:
        assert lib.known_files()["/p/a.jpg"].fingerprint == "abc"
        assert lib.last_run() is None  # the runs table exists now
    con = sqlite3.connect(db)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (SCHEMA_HEAD,)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_images_fingerprint", "ix_images_vector_gen"} <= names
    columns = {r[1] for r in con.execute("PRAGMA table_info(images)")}
    assert "vector_gen" in columns  # NULL for old rows: older than any IVF file


def test_new_library_uses_16k_pages_for_its_2k_vectors(tmp_path):
    Library.open(tmp_path, create=True).close()
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA page_size").fetchone() == (16384,)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_newer_schema_is_refused(tmp_path):
    Library.open(tmp_path, create=True).close()
    con = sqlite3.connect(tmp_path / DB_NAME)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    with pytest.raises(LibraryError, match="newer than this imgsearch understands"):
        Library.open(tmp_path)


def test_wal_mode(tmp_path):
    Library.open(tmp_path, create=True).close()
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_library_at_0003_gets_byte_paths_and_its_roots_from_the_run_history(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    db = tmp_path / "lib" / DB_NAME
    db.parent.mkdir()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        migrate.upgrade(conn, "0003")
        for name in ("a.jpg", "sub/b.jpg"):
            conn.exec_driver_sql(
                "INSERT INTO images (path, size, mtime_ns, fingerprint, status, vector, "
                "indexed_at) VALUES (?, 10, 5, 'abc', 'ok', x'0000803f', '2026-01-01')",
                (str(photos / name),),
            )
        conn.exec_driver_sql(
            "INSERT INTO runs (started_at, finished_at, roots, status) VALUES "
            "('2026-01-01', '2026-01-02', ?, 'ok')",
            (f"{photos}\n{tmp_path / 'gone'}",),
        )
        conn.exec_driver_sql("INSERT INTO meta VALUES ('generation', '1')")
    engine.dispose()
    with Library.open(db.parent) as lib:
        assert set(lib.known_files()) == {str(photos / "a.jpg"), str(photos / "sub/b.jpg")}
        roots = lib.roots()
        assert [r.path for r in roots] == [str(photos)]  # a root that no longer exists is not
        assert {k.root_id for k in lib.known_files().values()} == {roots[0].id}
        assert len(lib.ids_under(str(photos / "sub"))) == 1
    con = sqlite3.connect(db)
    assert {r[0] for r in con.execute("SELECT typeof(path) FROM images")} == {"blob"}


def test_tag_and_album_tables_from_0006(tmp_path):
    Library.open(tmp_path, create=True).close()
    con = sqlite3.connect(tmp_path / DB_NAME)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tag_sets", "tags", "albums", "album_examples", "album_members"} <= tables
