"""Schema migrations: head matches the code; old libraries upgrade; newer ones are refused."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import sqlalchemy as sa

from imgsearch import migrate
from imgsearch.errors import LibraryError
from imgsearch.library import DB_NAME, SCHEMA_HEAD, Library


def test_schema_head_constant_matches_alembic():
    assert migrate.head() == SCHEMA_HEAD


def test_head_sql_is_what_the_migrations_build():
    """migrations/head.sql, which new libraries are made from, is regenerated with every
    migration (`python -m imgsearch.migrate`): a stale copy fails here."""
    assert migrate.head_sql_path().read_text() == migrate.head_sql()


def test_a_new_library_is_made_at_head_without_alembic_and_equals_a_migrated_one(tmp_path):
    code = (
        "import sys\nfrom imgsearch.library import Library\n"
        f"Library.open({str(tmp_path / 'new')!r}, create=True).close()\n"
        "print(sorted(m for m in ('alembic', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
    made = sqlite3.connect(tmp_path / "new" / DB_NAME)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as conn:
        migrate.upgrade(conn)
    engine.dispose()
    migrated = sqlite3.connect(tmp_path / "migrated.db")
    assert list(made.iterdump()) == list(migrated.iterdump())
    assert made.execute("SELECT version_num FROM alembic_version").fetchone() == (SCHEMA_HEAD,)
    with Library.open(tmp_path / "new") as lib:  # and it opens, stores and counts as usual
        assert lib.vector_count() == 0 and lib.meta()["vector_count"] == "0"


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


def _library_at_0006(folder, vectors_f32, failed_paths=()):
    """A library as revision 0006 left it: vectors inside the images rows."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{folder / DB_NAME}")
    with engine.begin() as conn:
        migrate.upgrade(conn, "0006")
        for i, vec in enumerate(vectors_f32):
            conn.exec_driver_sql(
                "INSERT INTO images (id, path, size, mtime_ns, fingerprint, status, vector, "
                "indexed_at, vector_gen) VALUES (?, ?, 10, 5, 'abc', 'ok', ?, '2026-01-01', 1)",
                (i + 1, f"/p/{i:04d}.jpg".encode(), vec.tobytes()),
            )
        for path in failed_paths:
            conn.exec_driver_sql(
                "INSERT INTO images (path, size, mtime_ns, status, error, indexed_at) "
                "VALUES (?, 1, 1, 'error', 'bad', '2026-01-01')",
                (path.encode(),),
            )
        conn.exec_driver_sql(
            "INSERT INTO meta VALUES ('generation', '1'), ('dim', ?)", (vectors_f32.shape[1],)
        )
    engine.dispose()


def test_library_at_0006_moves_its_vectors_out_of_the_rows_and_searches_the_same(tmp_path):
    import numpy as np

    from imgsearch import vectors
    from imgsearch.vectors import IndexParams

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.normal(size=(20, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    folder = tmp_path / "lib"
    _library_at_0006(folder, x, failed_paths=["/p/broken.jpg"])
    # the IVF file the 0006 code saved for it (FAISS knows no SQL: same file at every revision)
    params = IndexParams(exact_max=1000, nprobe=8, rerank=4)
    ids = np.arange(1, len(x) + 1, dtype=np.int64)
    saved = vectors.build([(ids, x)], dim=32, params=params)
    name = vectors.save(folder, saved, 1)
    saved.fetch = lambda wanted: (wanted, x[wanted - 1])
    before = saved.search(q, 10)
    con = sqlite3.connect(folder / DB_NAME)
    con.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("faiss_file", name), ("faiss_generation", "1"), ("faiss_count", str(len(x))),
         ("faiss_kind", "ivf"), ("faiss_trained", str(len(x)))],
    )  # fmt: skip
    con.commit()
    con.close()

    with Library.open(folder) as lib:
        got_ids, got = lib.vectors_for_ids(ids)
        assert got_ids.tolist() == ids.tolist()
        assert np.array_equal(got, x)  # the very bytes, float32 as before
        index = lib.ann.current(params)
        assert lib.meta()["faiss_file"] == name  # the saved file is still valid: no rebuild
        after = index.search(q, 10)
        exact_lib = lib.ann.current(IndexParams(exact_max=10**6)).search(q, 10)
    assert np.array_equal(after[1], before[1]) and np.array_equal(after[0], before[0])
    want = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10] + 1
    assert np.array_equal(exact_lib[1], want)
    con = sqlite3.connect(folder / DB_NAME)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == (SCHEMA_HEAD,)
    assert "vector" not in {r[1] for r in con.execute("PRAGMA table_info(images)")}
    assert con.execute("SELECT count(*) FROM vectors").fetchone() == (len(x),)  # not the failed
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_vectors_follow_their_images_whoever_deletes_or_fails_them(tmp_path):
    """The triggers keep `vectors` to exactly the 'ok' images, even for raw SQL writes."""
    import numpy as np

    _library_at_0006(tmp_path, np.eye(4, 8, dtype=np.float32))
    Library.open(tmp_path).close()
    con = sqlite3.connect(tmp_path / DB_NAME)
    con.execute("DELETE FROM images WHERE id = 1")
    con.execute("UPDATE images SET status = 'error', error = 'gone bad' WHERE id = 2")
    con.execute("UPDATE images SET size = 11 WHERE id = 3")
    con.commit()
    assert [r[0] for r in con.execute("SELECT id FROM vectors ORDER BY id")] == [3, 4]
    assert con.execute("SELECT value FROM meta WHERE key = 'vector_count'").fetchone()[0] == "2"
    con.close()
    with Library.open(tmp_path) as lib, lib.write_lock():  # a rewrite is no new vector
        assert lib.vector_count() == 2
        from imgsearch.library import ImageRecord

        vec = np.eye(1, 8, dtype=np.float32)[0]
        lib.store([ImageRecord("/p/0003.jpg", 1, 1, "f", 1, 1, None, vec)], [])
        lib.store([ImageRecord("/p/new.jpg", 1, 1, "g", 1, 1, None, vec)], [])
        assert lib.vector_count() == 3
