"""The library: SQLite (source of truth) plus the derived FAISS file; the only writer of storage.

A library is a folder: `library.db` (SQLite, WAL; vectors in a table of their own),
`vectors-<generation>.faiss` (derived index), `write.lock` (held by the one process that may
write) and `text-encoder/` (ONNX text model).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgsearch import lazy
from imgsearch.errors import LibraryBusyError, LibraryError, ModelError
from imgsearch.modelspec import ModelSpec
from imgsearch.paths import display, from_key, prefix_range, to_key
from imgsearch.photo import METADATA_VERSION, PhotoMeta

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import sqlalchemy as sa

    from imgsearch.annindex import DerivedIndex
else:
    np = lazy.numpy  # an unchanged re-index never needs numpy

DB_NAME = "library.db"
LOCK_NAME = "write.lock"
TEXT_ENCODER_DIR = "text-encoder"
# The newest migration in migrations/versions; a test keeps it equal to Alembic's head.
SCHEMA_HEAD = "0008"

OK, ERROR = "ok", "error"
# meta.vector_format -> how a stored vector BLOB is encoded (absent: float32, as before 0007)
VECTOR_FORMATS = ("float32", "float16")  # meta.vector_format: the numpy dtype names
# meta.embedded_at: the compute precisions whose runs embedded vectors here, comma-separated;
# "unrecorded" stands for vectors stored before imgsearch recorded it. int8 and bf16 are the
# lossy opt-ins (close to fp32, not equal: benchmarks/ONNX.md); CUDA's fp16 and the CPU's
# fp32 mix by design (a library indexed from a GPU machine and a laptop).
UNRECORDED = "unrecorded"
LOSSY_PRECISIONS = ("int8", "bf16")
log = logging.getLogger(__name__)


def now() -> str:
    """UTC timestamp as ISO 8601, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class KnownFile:
    """What the library remembers of a path, enough to decide whether to re-embed it."""

    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    status: str
    root_id: int | None = None


@dataclass(frozen=True)
class Root:
    """A folder the library was asked to index (`kind` "root"), or one `forget` took out of a
    root (`kind` "excluded"); `device` is its st_dev when last indexed."""

    id: int
    path: str
    device: int | None
    added_at: str
    indexed_at: str | None
    kind: str = "root"


@dataclass(frozen=True)
class ImageRecord:
    """One embedded image, ready to store."""

    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    width: int
    height: int
    taken_at: str | None
    vector: npt.NDArray[np.float32]  # (dim,), L2-normalised
    root_id: int | None = None
    content_hash: str | None = None  # set when a byte-identical copy was confirmed
    meta: PhotoMeta | None = None
    phash: bytes | None = None  # photohash.pack of the picture's perceptual hash


@dataclass(frozen=True)
class FailedRecord:
    """A file that could not be indexed, kept with its reason for `imgsearch errors`."""

    path: str
    size: int
    mtime_ns: int
    reason: str
    root_id: int | None = None


@dataclass(frozen=True)
class StoredCopy:
    """A stored image that may be byte-identical to a new file (same size and partial hash)."""

    id: int
    path: str
    content_hash: str | None
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True)
class ImageDetail:
    """Everything stored about one indexed image but its vector (the web photo page)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    width: int | None
    height: int | None
    taken_at: str | None
    indexed_at: str


@dataclass(frozen=True)
class ImageInfo:
    """Metadata shown with a hit."""

    id: int
    path: str
    width: int | None
    height: int | None
    taken_at: str | None
    taken_at_source: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    file_type: str | None = None


INFO_COLUMNS = (
    "id, path, width, height, taken_at, taken_at_source, camera_make, camera_model, lens, "
    "latitude, longitude, altitude, file_type"
)


def meta_columns(path: str, meta: PhotoMeta | None) -> dict[str, Any]:
    """The metadata columns of one row (all None when unknown, e.g. a failed file)."""
    folder = to_key(os.path.dirname(path))
    if meta is None:
        return dict(
            taken_at_source=None, camera_make=None, camera_model=None, lens=None, latitude=None,
            longitude=None, altitude=None, orientation=None, file_type=None, folder=folder,
            meta_version=None,
        )  # fmt: skip
    return dict(
        taken_at_source=meta.taken_at_source, camera_make=meta.camera_make,
        camera_model=meta.camera_model, lens=meta.lens, latitude=meta.latitude,
        longitude=meta.longitude, altitude=meta.altitude, orientation=meta.orientation,
        file_type=meta.file_type, folder=folder, meta_version=METADATA_VERSION,
    )  # fmt: skip


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any = None) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    # Takes effect only while the database is still empty (creation). A `vectors` row is a 1-2
    # KiB BLOB: 4 KiB pages hold one row each, half empty; 16 KiB pages hold seven (the
    # benchmark's 100k library: 403 MB with 4 KiB pages, 235 MB with 16 KiB).
    cur.execute("PRAGMA page_size = 16384")
    # A read-only folder cannot set up WAL; reads still work.
    with contextlib.suppress(sqlite3.OperationalError):
        cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def vector_dtype(meta: dict[str, str]) -> type[np.floating[Any]]:
    """The numpy type of this library's stored vectors (`meta.vector_format`)."""
    return getattr(np, meta.get("vector_format") or "float32")


def decode(blob: bytes, dtype: type[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """One stored BLOB as a float32 vector (a copy)."""
    return np.frombuffer(blob, dtype=dtype).astype(np.float32)


def _chunk(
    rows: Sequence[tuple[int, bytes]], dim: int, dtype: type[np.floating[Any]] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(ids, float32 vectors) from (id, blob) rows stored as `dtype` (default float32)."""
    dtype = dtype or np.float32
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=dtype).reshape(-1, dim)
    return ids, mat if dtype is np.float32 else mat.astype(np.float32)


def _filesystem_state(path: Path) -> tuple[bool, bool]:
    """(read_only, nearly_full) for the filesystem holding `path`: SQLite often reports both
    as a bare 'disk I/O error' or 'unable to open database file'."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False, False
    read_only = bool(st.f_flag & os.ST_RDONLY) or not os.access(path, os.W_OK)
    return read_only, st.f_bavail * st.f_frsize < (1 << 20)


def wrap_db_error(path: Path, exc: BaseException) -> LibraryError:
    text = str(getattr(exc, "orig", None) or exc)
    low = text.lower()
    code = getattr(exc, "errno", None)
    read_only, full = _filesystem_state(path)
    if "database or disk is full" in low or code == errno.ENOSPC or (full and not read_only):
        return LibraryError(
            f"library {path}: the disk is full; free some space and run again "
            f"(nothing stored before was lost) ({text})"
        )
    if "readonly" in low or "read-only" in low or code in (errno.EROFS, errno.EACCES) or read_only:
        return LibraryError(
            f"library {path} is read-only; use a writable --library folder, or make it "
            f"writable ({text})"
        )
    return LibraryError(f"library {path}: database error: {text}")


class Library:
    """An open library folder. Reads are safe alongside one writer; writes need `write_lock()`.

    The query path reads through one stdlib sqlite3 connection, so a cold `imgsearch query`
    never imports SQLAlchemy (~0.3 s of its 1 s budget); schema, migrations and every write go
    through SQLAlchemy, imported on first need.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = path / DB_NAME
        self._engine: sa.Engine | None = None
        # Each thread reads through its own connection (a server answers many queries at
        # once; WAL readers do not block each other), with its open snapshot's cursor.
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._ann: DerivedIndex | None = None

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> Library:
        """Open (and with `create`, make) the library at `path`, migrating its schema if needed."""
        folder = Path(path).expanduser().absolute()
        db = folder / DB_NAME
        if not db.is_file():
            if not create:
                raise LibraryError(
                    f"no library at {folder}; index some photos first: "
                    f"imgsearch index PATH --library {folder}"
                )
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LibraryError(
                    f"cannot create library folder {folder}: {exc.strerror}"
                ) from exc
        elif not os.access(db, os.R_OK):
            raise LibraryError(f"library {db} is not readable (permission denied)")
        lib = cls(folder)
        try:
            lib._migrate()
        except LibraryError:
            lib.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            lib.close()
            raise wrap_db_error(folder, exc) from exc
        except Exception as exc:
            lib.close()
            if type(exc).__module__.startswith("sqlalchemy"):
                raise wrap_db_error(folder, exc) from exc
            raise
        return lib

    @property
    def engine(self) -> sa.Engine:
        """SQLAlchemy engine for schema changes and writes (created on first use)."""
        if self._engine is None:
            import sqlalchemy as sa

            self._engine = sa.create_engine(f"sqlite:///{self.db}", poolclass=sa.pool.NullPool)
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        return self._engine

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Cursor]:
        """A consistent read: every statement inside sees the same committed state. Nested
        snapshots (in the same thread) share the outer one, see `reading`; other threads have
        snapshots of their own."""
        local = self._local
        current = getattr(local, "cursor", None)
        if current is not None:
            yield current
            return
        reader = getattr(local, "reader", None)
        if reader is None:
            reader = local.reader = self._connect_reader()
            with self._readers_lock:
                self._readers.append(reader)
        cur = reader.cursor()
        cur.execute("BEGIN")
        local.cursor = cur
        try:
            yield cur
        finally:
            local.cursor = None
            cur.execute("COMMIT")
            cur.close()

    def snapshot(self) -> contextlib.AbstractContextManager[sqlite3.Cursor]:
        """A read cursor on one committed state (inside `reading()`, that same state)."""
        return self._snapshot()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Make every read inside one snapshot: a search's FAISS index, re-rank vectors and
        metadata then come from the same state of the library, whatever a writer does."""
        with self._snapshot():
            yield

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
        try:
            _sqlite_pragmas(conn)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if not _filesystem_state(self.path)[0]:
                raise
        # A read-only mount: WAL cannot create its -shm file, but nothing can write here
        # either, so the database may be opened as immutable and searched as it is.
        from urllib.parse import quote

        uri = f"file:{quote(str(self.db))}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def _revision(self) -> str | None:
        with self._snapshot() as cur:
            has = cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
            ).fetchone()
            if not has:
                return None
            row = cur.execute("SELECT version_num FROM alembic_version").fetchone()
            return row[0] if row else None

    def _migrate(self) -> None:
        current = self._revision()
        if current == SCHEMA_HEAD:
            return  # the common case costs one query and no Alembic import
        if current is None and self._create_at_head():
            return
        from imgsearch import migrate

        if current is not None and not migrate.is_known(current):
            raise LibraryError(
                f"library {self.path} has schema revision {current}, newer than this imgsearch "
                f"understands (latest {SCHEMA_HEAD}); upgrade imgsearch to open it"
            )
        from imgsearch.interrupts import held

        with self.write_lock(wait=True), held(), self.engine.begin() as conn:
            migrate.upgrade(conn)

    def _create_at_head(self) -> bool:
        """Give a new, empty database the head schema in one script (migrations/head.sql,
        generated from the migrations and tested to match them), without importing Alembic
        and SQLAlchemy or running eight migrations: ~0.4 s of CPU off every first `index`.
        False when another process made the tables first: Alembic then takes it from there."""
        from imgsearch.interrupts import held
        from migrations import HEAD_SQL

        script = HEAD_SQL.read_text()
        with self.write_lock(wait=True), held():
            con = sqlite3.connect(self.db, isolation_level=None)
            try:
                _sqlite_pragmas(con)  # page size and WAL: set before the first table
                if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    return False
                con.executescript(f"BEGIN;\n{script}COMMIT;")  # all of it or, closed, none
            finally:
                con.close()
        return True

    def close(self) -> None:
        self.release_lock()
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        self._local = threading.local()
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the write lock ------------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self, *, wait: bool = False) -> Iterator[None]:
        """Hold the exclusive write lock (flock: the kernel frees it if the process dies)."""
        if self._lock_fd is not None:
            yield
            return
        lock_path = self.path / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise wrap_db_error(self.path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LibraryBusyError(
                f"library {self.path} is being written by {holder}; wait for that run to finish "
                f"(or use --wait)"
            ) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"imgsearch pid {os.getpid()}".encode(), 0)
        self._lock_fd = fd
        try:
            yield
        finally:
            self.release_lock()

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # ---- metadata ------------------------------------------------------------------------
    def meta(self, cur: sqlite3.Cursor | None = None) -> dict[str, str]:
        if cur is None:
            with self._snapshot() as c:
                return self.meta(c)
        return dict(cur.execute("SELECT key, value FROM meta").fetchall())

    @staticmethod
    def _set_meta(conn: sa.Connection, **values: object) -> None:
        import sqlalchemy as sa

        for key, value in values.items():
            conn.execute(
                sa.text(
                    "INSERT INTO meta(key, value) VALUES (:k, :v) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                ),
                {"k": key, "v": str(value)},
            )

    def set_meta(self, **values: object) -> None:
        """Store library-level facts (writer only)."""
        with self._writing() as conn:
            self._set_meta(conn, **values)

    def model_spec(self) -> ModelSpec | None:
        raw = self.meta().get("model")
        return ModelSpec.from_json(raw) if raw else None

    def check_model(self, spec: ModelSpec) -> None:
        """Refuse vectors from a model other than the library's (they would not be comparable)."""
        have = self.model_spec()
        if have is not None and not have.same_model(spec):
            raise self.model_mismatch(have.label(), spec.label())

    def model_mismatch(self, have: str, asked: str) -> ModelError:
        return ModelError(
            f"library {self.path} was built with {have}, not {asked}. Vectors of different models "
            f"cannot be mixed: drop --model/--pretrained to use the library's model, or index into "
            f"a new library with --library NEW_FOLDER"
        )

    def set_model_spec(self, spec: ModelSpec, *, precision: str | None = None) -> None:
        """Record the library's model; `precision` (the `vector_precision` setting) fixes how
        vectors are stored while none is stored yet (an existing library keeps its own)."""
        self.check_model(spec)
        meta = self.meta()
        with self._writing() as conn:
            if "created_at" not in meta:
                self._set_meta(conn, created_at=now())
            self._set_meta(conn, model=spec.to_json(), dim=spec.dim, updated_at=now())
            empty = conn.exec_driver_sql("SELECT 1 FROM vectors LIMIT 1").first() is None
            if precision is not None and "vector_format" not in meta and empty:
                if precision not in VECTOR_FORMATS:
                    raise LibraryError(
                        f"vector precision {precision!r} is not one of "
                        f"{', '.join(VECTOR_FORMATS)}; fix the vector_precision setting"
                    )
                self._set_meta(conn, vector_format=precision)

    def embedded_at(self) -> list[str]:
        """The compute precisions that embedded this library's vectors (`note_precision`)."""
        meta = self.meta()
        have = [p for p in meta.get("embedded_at", "").split(",") if p]
        return have or ([UNRECORDED] if self.vector_count() else [])

    def note_precision(self, precision: str) -> str | None:
        """Record that a run embeds at `precision` (writer only); a notice for the user when
        that mixes a lossy opt-in (int8, bf16) with vectors made at another precision, since
        searches then compare vectors that are close but not equal."""
        have = self.embedded_at()
        if precision in have:
            return None
        self.set_meta(embedded_at=",".join([*have, precision]))
        if not have or not ({precision, *have} & set(LOSSY_PRECISIONS)):
            return None
        before = ", ".join("an unrecorded precision" if p == UNRECORDED else p for p in have)
        return (
            f"library {self.path} holds vectors embedded at {before}; this run embeds at "
            f"{precision}, close but not equal, so its searches mix the two (to keep one "
            f"precision, index into a new library with --library NEW_FOLDER)"
        )

    def generation(self) -> int:
        """Bumped by every write that changes which vectors exist; the FAISS file records it."""
        return int(self.meta().get("generation", "0"))

    # ---- reads ---------------------------------------------------------------------------
    def known_files(
        self,
        under: Sequence[str] | None = None,
        *,
        root_ids: Sequence[int] | None = None,
        paths: Sequence[str] | None = None,
    ) -> dict[str, KnownFile]:
        """Every stored path (no argument), or those at or under `under`, owned by `root_ids`
        or in `paths` (any of them), keyed by path."""
        sql = "SELECT id, path, size, mtime_ns, fingerprint, status, root_id FROM images"
        with self._snapshot() as cur:
            if under is None and root_ids is None and paths is None:
                rows = cur.execute(sql).fetchall()
                return {from_key(r[1]): KnownFile(r[0], from_key(r[1]), *r[2:]) for r in rows}
            found: dict[str, KnownFile] = {}

            def take(where: str, args: Sequence[Any]) -> None:
                for r in cur.execute(f"{sql} WHERE {where}", list(args)):
                    found[from_key(r[1])] = KnownFile(r[0], from_key(r[1]), *r[2:])

            for folder in under or ():
                low, high = prefix_range(folder)
                take("path = ? OR (path >= ? AND path < ?)", [to_key(folder), low, high])
            root_ids = root_ids or ()
            for start in range(0, len(root_ids), 500):
                part = list(root_ids[start : start + 500])
                take(f"root_id IN ({','.join('?' * len(part))})", part)
            wanted = [p for p in paths or () if p not in found]
            for start in range(0, len(wanted), 500):
                part = [to_key(p) for p in wanted[start : start + 500]]
                take(f"path IN ({','.join('?' * len(part))})", part)
            return found

    def count(self, status: str = OK) -> int:
        with self._snapshot() as cur:
            return cur.execute(
                "SELECT count(*) FROM images WHERE status = ?", (status,)
            ).fetchone()[0]

    def vector_count(self, cur: sqlite3.Cursor | None = None) -> int:
        """Stored vectors (= 'ok' images), from the counter the triggers keep: O(1) at 10M."""
        if cur is None:
            with self._snapshot() as c:
                return self.vector_count(c)
        row = cur.execute("SELECT value FROM meta WHERE key = 'vector_count'").fetchone()
        if row is not None:
            return int(row[0])
        return int(cur.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def vectors(
        self,
        cur: sqlite3.Cursor | None = None,
        *,
        batch: int = 65536,
        only: npt.NDArray[np.int64] | None = None,
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Stored vectors (all, or the `only` ids) as (ids, matrix) chunks in one snapshot."""
        if cur is None:
            with self._snapshot() as c:
                yield from self.vectors(c, batch=batch, only=only)
            return
        meta = self.meta(cur)
        dim, dtype = int(meta.get("dim", "0") or 0), vector_dtype(meta)
        # `vectors` holds a row exactly for each 'ok' image (migration 0007's triggers)
        if only is not None:
            for start in range(0, len(only), 900):
                part = [int(i) for i in only[start : start + 900]]
                rows = cur.execute(
                    f"SELECT id, vector FROM vectors "
                    f"WHERE id IN ({','.join('?' * len(part))}) ORDER BY id",
                    part,
                ).fetchall()
                yield _chunk(rows, dim, dtype)
            return
        rows = cur.execute("SELECT id, vector FROM vectors ORDER BY id")
        while chunk := rows.fetchmany(batch):
            yield _chunk(chunk, dim, dtype)

    def vector_for_path(self, path: str) -> tuple[int, npt.NDArray[np.float32]] | None:
        with self._snapshot() as cur:
            row = cur.execute(
                "SELECT images.id, vectors.vector FROM images JOIN vectors USING (id) "
                "WHERE images.path = ? AND images.status = ?",
                (to_key(path), OK),
            ).fetchone()
            dtype = vector_dtype(self.meta(cur))
        if row is None:
            return None
        return row[0], decode(row[1], dtype)

    def info(self, ids: Iterable[int]) -> dict[int, ImageInfo]:
        """Metadata of the ids that exist (inside `reading()`, of the same state as the index)."""
        wanted = [int(i) for i in ids]
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        with self._snapshot() as cur:
            rows = cur.execute(
                f"SELECT {INFO_COLUMNS} FROM images WHERE status = ? AND id IN ({marks})",
                [OK, *wanted],
            ).fetchall()
        return {r[0]: ImageInfo(r[0], from_key(r[1]), *r[2:]) for r in rows}

    def ids_under(self, folder: str) -> npt.NDArray[np.int64]:
        """Ids of the images inside `folder` (canonical), by a range over the path keys."""
        low, high = prefix_range(folder)
        with self._snapshot() as cur:
            rows = cur.execute(
                "SELECT id FROM images WHERE status = ? AND path >= ? AND path < ?",
                (OK, low, high),
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def ids_outside_roots(self, root_ids: Sequence[int]) -> npt.NDArray[np.int64]:
        """Ids of the images that no root in `root_ids` owns (results leave out missing roots)."""
        marks = ",".join("?" * len(root_ids))
        with self._snapshot() as cur:
            rows = cur.execute(
                f"SELECT id FROM images WHERE status = ? "
                f"AND (root_id IS NULL OR root_id NOT IN ({marks}))",
                [OK, *root_ids],
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def detail(self, image_id: int) -> ImageDetail | None:
        """One indexed image by id (None when there is none, or it failed to index)."""
        return self.details([image_id]).get(int(image_id))

    def details(self, ids: Iterable[int]) -> dict[int, ImageDetail]:
        """Indexed images by id, all in one snapshot (ids that do not exist are left out)."""
        wanted = [int(i) for i in ids]
        found: dict[int, ImageDetail] = {}
        with self._snapshot() as cur:
            for start in range(0, len(wanted), 900):
                part = wanted[start : start + 900]
                marks = ",".join("?" * len(part))
                rows = cur.execute(
                    "SELECT id, path, size, mtime_ns, fingerprint, width, height, taken_at, "
                    f"indexed_at FROM images WHERE status = ? AND id IN ({marks})",
                    [OK, *part],
                ).fetchall()
                found.update((r[0], ImageDetail(r[0], from_key(r[1]), *r[2:])) for r in rows)
        return found

    def errors(self) -> list[tuple[str, str]]:
        with self._snapshot() as cur:
            rows = cur.execute(
                "SELECT path, error FROM images WHERE status = ? ORDER BY path", (ERROR,)
            ).fetchall()
        return [(from_key(p), r or "") for p, r in rows]

    # ---- roots ---------------------------------------------------------------------------
    def roots(self) -> list[Root]:
        """The folders the library covers (and the excluded ones), in path order."""
        with self._snapshot() as cur:
            rows = cur.execute(
                "SELECT id, path, device, added_at, indexed_at, kind FROM roots ORDER BY path"
            ).fetchall()
        return [Root(r[0], from_key(r[1]), *r[2:]) for r in rows]

    def counts_by_root(self) -> dict[int | None, tuple[int, int]]:
        """root id -> (images indexed, files that failed)."""
        with self._snapshot() as cur:
            rows = cur.execute(
                "SELECT root_id, sum(status = ?), sum(status = ?) FROM images GROUP BY root_id",
                (OK, ERROR),
            ).fetchall()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}

    def copies_of(self, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], list[StoredCopy]]:
        """Stored images with these (size, partial hash) pairs: candidates for vector sharing."""
        wanted = sorted(set(keys))
        found: dict[tuple[int, str], list[StoredCopy]] = {}
        with self._snapshot() as cur:
            dtype = vector_dtype(self.meta(cur))
            for start in range(0, len(wanted), 400):
                part = set(wanted[start : start + 400])
                marks = ",".join("?" * len(part))
                rows = cur.execute(
                    f"SELECT images.id, path, size, fingerprint, content_hash, vectors.vector "
                    f"FROM images JOIN vectors USING (id) "
                    f"WHERE status = ? AND fingerprint IN ({marks})",
                    [OK, *(fp for _, fp in part)],
                ).fetchall()
                for rid, key, size, fp, chash, blob in rows:
                    if (size, fp) in part:
                        vec = decode(blob, dtype)
                        found.setdefault((size, fp), []).append(
                            StoredCopy(rid, from_key(key), chash, vec)
                        )
        return found

    def last_run(self) -> dict[str, Any] | None:
        with self._snapshot() as cur:
            cur.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([d[0] for d in cur.description], row))

    # ---- writes (callers hold write_lock) ------------------------------------------------
    def writing(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A write transaction (callers hold write_lock); database errors say what to do."""
        return self._writing()

    def set_meta_in(self, conn: sa.Connection, **values: object) -> None:
        """Library-level facts, inside the caller's write transaction."""
        self._set_meta(conn, **values)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        import sqlalchemy as sa

        from imgsearch.interrupts import held

        try:
            with held(), self.engine.begin() as conn:  # Ctrl-C waits for commit or rollback
                yield conn
        except sa.exc.DBAPIError as exc:
            raise wrap_db_error(self.path, exc) from exc

    def _bump(self, conn: sa.Connection) -> int:
        """Advance the generation (every write does, in its own transaction); returns it."""
        import sqlalchemy as sa

        gen = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'generation'")).scalar()
        new = int(gen or 0) + 1
        self._set_meta(conn, generation=new, updated_at=now())
        return new

    def store(self, done: Sequence[ImageRecord], failed: Sequence[FailedRecord]) -> None:
        """Write one batch in one transaction: a killed run keeps every batch stored before it.

        One upsert per batch (a changed file keeps its row id), then its vectors by id in
        `vectors`; `vector_gen` marks the vectors written here so the FAISS index can be
        updated instead of rebuilt. A failed file loses its vector (a trigger).
        """
        if not done and not failed:
            return
        from sqlalchemy.dialects.sqlite import insert

        from imgsearch.schema import images

        stamp = now()
        with self._writing() as conn:
            gen = self._bump(conn)
            fmt = conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'vector_format'")
            dtype = getattr(np, fmt.scalar() or "float32")
            rows = [
                dict(
                    path=to_key(rec.path), size=rec.size, mtime_ns=rec.mtime_ns,
                    fingerprint=rec.fingerprint, width=rec.width, height=rec.height,
                    taken_at=rec.taken_at, status=OK, error=None, indexed_at=stamp,
                    vector_gen=gen, root_id=rec.root_id,
                    content_hash=rec.content_hash, **meta_columns(rec.path, rec.meta),
                    phash=rec.phash,
                )
                for rec in done
            ] + [
                dict(
                    path=to_key(fail.path), size=fail.size, mtime_ns=fail.mtime_ns,
                    fingerprint=None, width=None, height=None, taken_at=None, status=ERROR,
                    error=fail.reason, indexed_at=stamp, vector_gen=None,
                    root_id=fail.root_id, content_hash=None, **meta_columns(fail.path, None),
                    phash=None,
                )
                for fail in failed
            ]  # fmt: skip
            stmt = insert(images)
            columns = [c for c in rows[0] if c != "path"]
            stmt = stmt.on_conflict_do_update(
                index_elements=[images.c.path], set_={c: stmt.excluded[c] for c in columns}
            )
            conn.execute(stmt, rows)
            if done:
                self._store_vectors(conn, done, dtype)

    @staticmethod
    def _store_vectors(
        conn: sa.Connection, done: Sequence[ImageRecord], dtype: type[np.floating[Any]]
    ) -> None:
        """The vectors of rows just upserted, by their ids (looked up by path)."""
        keys = [to_key(rec.path) for rec in done]
        ids: dict[bytes, int] = {}
        for start in range(0, len(keys), 900):
            part = keys[start : start + 900]
            found = conn.exec_driver_sql(
                f"SELECT path, id FROM images WHERE path IN ({','.join('?' * len(part))})",
                tuple(part),
            )
            ids.update((bytes(p), int(i)) for p, i in found)
        conn.exec_driver_sql(  # an upsert, not REPLACE: the count triggers see an UPDATE
            "INSERT INTO vectors (id, vector) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET vector = excluded.vector",
            [
                (ids[key], np.ascontiguousarray(rec.vector, dtype=dtype).tobytes())
                for key, rec in zip(keys, done)
            ],
        )

    def move(self, moves: Sequence[tuple[int, str, int, int, int | None]]) -> None:
        """Re-point rows (id, new_path, size, mtime_ns, root_id) at their new paths, keeping
        the vectors."""
        if not moves:
            return
        from imgsearch.schema import images

        with self._writing() as conn:
            for row_id, new_path, size, mtime_ns, root_id in moves:
                key = to_key(new_path)
                conn.execute(images.delete().where(images.c.path == key, images.c.id != row_id))
                conn.execute(
                    images.update()
                    .where(images.c.id == row_id)
                    .values(path=key, size=size, mtime_ns=mtime_ns, root_id=root_id)
                )
            self._bump(conn)

    def stale_metadata(self, version: int) -> list[tuple[int, str]]:
        """(id, path) of indexed rows whose metadata an older reader wrote (or none did)."""
        with self._snapshot() as cur:
            rows = cur.execute(
                "SELECT id, path FROM images WHERE status = ? "
                "AND (meta_version IS NULL OR meta_version < ?)",
                (OK, version),
            ).fetchall()
        return [(r[0], from_key(r[1])) for r in rows]

    def set_metadata(
        self, rows: Sequence[tuple[int, str, PhotoMeta]], phashes: dict[int, bytes] | None = None
    ) -> None:
        """Store re-read metadata and perceptual hashes (no vector changes, so no new
        generation)."""
        if not rows:
            return
        from imgsearch.schema import images

        phashes = phashes or {}
        with self._writing() as conn:
            for row_id, path, meta in rows:
                values = meta_columns(path, meta)
                values.update(width=meta.width, height=meta.height, taken_at=meta.taken_at)
                if row_id in phashes:
                    values.update(phash=phashes[row_id])
                conn.execute(images.update().where(images.c.id == row_id).values(**values))

    def set_content_hashes(self, hashes: dict[int, str]) -> None:
        """Remember full-content hashes computed to confirm a copy (no generation change)."""
        if not hashes:
            return
        from imgsearch.schema import images

        with self._writing() as conn:
            for row_id, digest in hashes.items():
                conn.execute(
                    images.update().where(images.c.id == row_id).values(content_hash=digest)
                )

    def add_root(self, path: str, device: int | None, kind: str = "root") -> int:
        """Register a canonical folder (or return the id it has); an excluded folder that is
        indexed again becomes a root."""
        import sqlalchemy as sa

        from imgsearch.schema import roots

        key = to_key(path)
        with self._writing() as conn:
            row = conn.execute(sa.select(roots.c.id).where(roots.c.path == key)).first()
            if row is not None:
                conn.execute(roots.update().where(roots.c.id == row[0]).values(kind=kind))
                return int(row[0])
            result = conn.execute(
                roots.insert().values(path=key, device=device, added_at=now(), kind=kind)
            )
            return int(result.inserted_primary_key[0])

    def drop_root(self, root_id: int) -> None:
        """Forget a root record (its images are removed separately, or have moved)."""
        from imgsearch.schema import images, roots

        with self._writing() as conn:
            conn.execute(roots.delete().where(roots.c.id == root_id))
            conn.execute(images.update().where(images.c.root_id == root_id).values(root_id=None))

    def forget(self, folder: str, root_ids: Sequence[int]) -> int:
        """Remove every image inside `folder` or owned by `root_ids`, in one transaction;
        returns how many rows went."""
        import sqlalchemy as sa

        from imgsearch.schema import images, roots

        low, high = prefix_range(folder)
        key = to_key(folder)
        inside = sa.or_(images.c.path == key, sa.and_(images.c.path >= low, images.c.path < high))
        with self._writing() as conn:
            cond = sa.or_(inside, images.c.root_id.in_(list(root_ids))) if root_ids else inside
            gone = conn.execute(images.delete().where(cond)).rowcount
            if root_ids:
                conn.execute(roots.delete().where(roots.c.id.in_(list(root_ids))))
            self._bump(conn)
        return int(gone or 0)

    def remove(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        from imgsearch.schema import images

        with self._writing() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(images.delete().where(images.c.id.in_(list(ids[start : start + 500]))))
            self._bump(conn)

    def record_run(
        self,
        started_at: str,
        roots: Sequence[str],
        counts: dict[str, int],
        status: str,
        indexed: Sequence[tuple[int, int | None]] = (),
    ) -> None:
        """Append to the run history. Written with stdlib sqlite3: an unchanged tree must not pay
        ~0.3 s to import SQLAlchemy for this one row (re-index budget: 0.5 s per 10k files)."""
        row = dict(
            started_at=started_at, finished_at=now(), roots="\n".join(map(display, roots)),
            status=status, **counts,
        )  # fmt: skip
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        try:
            with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as conn, conn:
                conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", list(row.values()))
                conn.executemany(  # (root id, st_dev) of the roots this run indexed whole
                    "UPDATE roots SET indexed_at = ?, device = ? WHERE id = ?",
                    [(row["finished_at"], dev, root_id) for root_id, dev in indexed],
                )
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('last_run_at', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (now(),),
                )
        except sqlite3.Error as exc:
            raise wrap_db_error(self.path, exc) from exc

    # ---- vectors for the derived index --------------------------------------------------
    @property
    def ann(self) -> DerivedIndex:
        """The FAISS index derived from this library's vectors (imgsearch/annindex.py)."""
        if self._ann is None:
            from imgsearch.annindex import DerivedIndex

            self._ann = DerivedIndex(self)
        return self._ann

    def vectors_for_ids(
        self, ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(ids found, their stored vectors) in one snapshot: exact re-ranking of IVF hits."""
        parts = list(self.vectors(only=ids))
        if not parts:
            return _chunk([], int(self.meta().get("dim", "0") or 0))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
