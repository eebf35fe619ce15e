"""SQLite access for tags and albums: reads through stdlib sqlite3, writes under the lock.

The Library owns the images table; these tables (migration 0006) hang off its ids. Reads open
their own query-only connection, so a `tag:` or `album:` filter costs no SQLAlchemy import.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgsearch.library import Library


def rows(library: Library, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """All rows of one read-only query."""
    from imgsearch.library import wrap_db_error

    try:
        with contextlib.closing(sqlite3.connect(library.db, timeout=30)) as conn:
            conn.execute("PRAGMA query_only = 1")
            return conn.execute(sql, list(args)).fetchall()
    except sqlite3.Error as exc:
        raise wrap_db_error(library.path, exc) from exc


@contextlib.contextmanager
def writing(library: Library) -> Iterator[sqlite3.Connection]:
    """One write transaction, holding the library's write lock (waits for another writer)."""
    from imgsearch.library import _sqlite_pragmas, wrap_db_error

    with library.write_lock(wait=True):
        try:
            with contextlib.closing(sqlite3.connect(library.db, timeout=30)) as conn:
                _sqlite_pragmas(conn)
                with conn:
                    yield conn
        except sqlite3.Error as exc:
            raise wrap_db_error(library.path, exc) from exc
