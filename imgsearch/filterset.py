"""A query's filters as the set of ids a search may return: counted, listed, or tested on a
search's own candidates only, so a filter that allows most of a million-photo library is never
listed id by id (reading 1M ids out of SQLite took 0.6-0.9 s; benchmarks/ANN.md).

Each set is cached for one committed state of the library: the key holds the reading
connection and its `PRAGMA data_version`, which changes whenever another connection commits
(an index run, a metadata refresh, a tag or album edit: writes that keep the generation), so
an answer never mixes two states (issue 3). The pages of one query and the queries of one
filter then run the filter's SQL once. The cache is bounded in entries and in bytes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

    from imgsearch.library import Library
    from imgsearch.query import Filter

CHUNK = 900  # ids bound per statement (SQLite's historical variable limit is 999)
NOT_OK = "(status < 'ok' OR status > 'ok')"  # the status index (a != test is a full scan)


@dataclass
class Allowed:
    """The ids that pass `where` (SQL over `images`), are in every `positive` set and in no
    `negative` set (tag:, album:, near:), among the library's indexed images.
    `count`, `ids` and `bitmap` are computed on first need and kept (see module docstring)."""

    where: str
    args: tuple[Any, ...]
    positive: tuple[npt.NDArray[np.int64], ...] = ()
    negative: tuple[npt.NDArray[np.int64], ...] = ()
    total: int = 0  # indexed images in the library
    _count: int | None = None
    _ids: npt.NDArray[np.int64] | None = None
    _bitmap: npt.NDArray[np.uint8] | None = None
    lists: dict[int, Any] = field(default_factory=dict)  # id(index) -> (index, bits, count)

    @property
    def nbytes(self) -> int:
        arrays = [*self.positive, *self.negative, self._ids, self._bitmap]
        arrays += [v[1] for v in self.lists.values()]
        return sum(a.nbytes for a in arrays if a is not None) + 512

    def count(self, cur: sqlite3.Cursor) -> int:
        """How many images are allowed: one SQL count (the column's index), no id list."""
        if self._count is None:
            if self.positive or self._ids is not None:
                self._count = len(self.ids(cur))
            else:
                n = self.total if self.where == "1" else _scalar(cur, self.where, self.args)
                if self.where != "1":  # less the failed rows it matches (few: by id)
                    failed = _ids(cur, NOT_OK, ())
                    n -= int(self._sql_members(cur, failed, indexed=False).sum())
                if self.negative:
                    left_out = reduce(np.union1d, self.negative)
                    n -= int(self._sql_members(cur, left_out).sum())
                self._count = n
        return self._count

    def ids(self, cur: sqlite3.Cursor) -> npt.NDArray[np.int64]:
        """Every allowed id, sorted (for a selective filter: its count is small)."""
        if self._ids is None:
            if self.positive:
                base = reduce(np.intersect1d, self.positive)
                ids = base[self._sql_members(cur, base)]
            else:
                ids = _ids(cur, self.where, self.args)
                failed = _ids(cur, NOT_OK, ())
                if len(failed):
                    ids = np.setdiff1d(ids, failed, assume_unique=True)
            for left_out in self.negative:
                ids = ids[~np.isin(ids, left_out)]
            self._ids = ids
            self._count = len(ids)
        return self._ids

    def bitmap(self, cur: sqlite3.Cursor) -> npt.NDArray[np.uint8]:
        """The allowed ids as bits over 0..max id (faiss's IDSelectorBitmap reads it)."""
        if self._bitmap is None:
            ids = self.ids(cur)
            mask = np.zeros(int(ids.max()) + 1 if len(ids) else 1, dtype=bool)
            mask[ids] = True
            self._bitmap = np.packbits(mask, bitorder="little")
        return self._bitmap

    def members(self, cur: sqlite3.Cursor, candidates: npt.NDArray[np.int64]) -> npt.NDArray:
        """Which of `candidates` are allowed (bool per candidate): by the kept ids when listed,
        else by the filter's SQL on those rows only (primary-key lookups)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        if self._ids is not None:  # one bit test each (np.isin sorts the whole list)
            bits = self.bitmap(cur)
            inside = candidates < len(bits) * 8
            ok = np.zeros(len(candidates), dtype=bool)
            ids = candidates[inside]
            ok[inside] = (bits[ids >> 3] >> (ids & 7)) & 1 == 1
            return ok
        ok = self._sql_members(cur, candidates)
        for must in self.positive:
            ok &= np.isin(candidates, must)
        for left_out in self.negative:
            ok &= ~np.isin(candidates, left_out)
        return ok

    def _sql_members(
        self, cur: sqlite3.Cursor, ids: npt.NDArray[np.int64], *, indexed: bool = True
    ) -> npt.NDArray:
        """Which `ids` pass `where` (and, `indexed`, are indexed images), by primary key."""
        found: list[int] = []
        status = "+status = 'ok' AND " if indexed else ""
        for start in range(0, len(ids), CHUNK):
            part = [int(i) for i in ids[start : start + CHUNK]]
            marks = ",".join("?" * len(part))
            sql = f"SELECT id FROM images WHERE id IN ({marks}) AND {status}({self.where})"
            found += [r[0] for r in cur.execute(sql, [*part, *self.args])]
        return np.isin(ids, np.array(found, dtype=np.int64))


def _scalar(cur: sqlite3.Cursor, where: str, args: Sequence[Any]) -> int:
    return int(cur.execute(f"SELECT count(*) FROM images WHERE {where}", args).fetchone()[0])


def _ids(cur: sqlite3.Cursor, where: str, args: Sequence[Any]) -> npt.NDArray[np.int64]:
    """Sorted ids of `images` rows passing `where`, read as one group_concat string and parsed
    by numpy: 100k ids in 32 ms against 88 ms for a row per id (busy VM)."""
    text = cur.execute(f"SELECT group_concat(id) FROM images WHERE {where}", args).fetchone()[0]
    if not text:
        return np.empty(0, np.int64)
    return np.sort(np.fromstring(text, dtype=np.int64, sep=","))


def key_of(filters: Sequence[Filter], missing: Sequence[int]) -> Hashable:
    """What an allowed set depends on besides the library's state: the compiled SQL (folders
    resolved, bad values raising QueryError on every query, cached or not), the filters
    answered outside SQL, and the missing roots."""
    from imgsearch.filters import sql_of

    where, args = sql_of(filters)
    outside = tuple(f for f in filters if f.key in ("tag", "album", "near"))
    return where, tuple(args), outside, tuple(missing)


def build(
    library: Library, cur: sqlite3.Cursor, filters: Sequence[Filter], missing: Sequence[int]
) -> Allowed:
    """The Allowed set of `filters`, leaving out the images of the `missing` root ids."""
    from imgsearch.filters import outside_sets, sql_of

    where, args = sql_of(filters)
    sets = outside_sets(library, cur, filters)
    if missing:
        marks = ",".join("?" * len(missing))
        where = f"({where}) AND (root_id IS NULL OR root_id NOT IN ({marks}))"
        args = [*args, *missing]
    positive = tuple(ids for ids, negate in sets if not negate)
    negative = tuple(ids for ids, negate in sets if negate)
    return Allowed(where, tuple(args), positive, negative, library.vector_count(cur))


class FilterCache:
    """Allowed sets by (reading connection, its data_version, filters, missing roots), least
    recently used dropped past `entries` or `budget` bytes; thread-safe (each thread reads
    through its own connection, so an entry is only ever used by one thread)."""

    def __init__(self, entries: int = 32, budget: int = 64 << 20) -> None:
        self.entries, self.budget = entries, budget
        self._items: OrderedDict[Hashable, Allowed] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cur: sqlite3.Cursor, key: Hashable, make: Callable[[], Allowed]) -> Allowed:
        version = int(cur.execute("PRAGMA data_version").fetchone()[0])
        full = (cur.connection, version, key)
        with self._lock:
            found = self._items.get(full)
            if found is not None:
                self._items.move_to_end(full)
                return found
        made = make()
        with self._lock:
            for old in [k for k in self._items if k[0] is cur.connection and k[1] != version]:
                del self._items[old]  # that connection has moved on to a newer state
            self._items[full] = made
            self._trim()
        return made

    def trim(self) -> None:
        """Drop the least recently used entries past the bounds (call after an entry grew)."""
        with self._lock:
            self._trim()

    def _trim(self) -> None:
        size = sum(a.nbytes for a in self._items.values())
        while len(self._items) > 1 and (len(self._items) > self.entries or size > self.budget):
            _, dropped = self._items.popitem(last=False)
            size -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
