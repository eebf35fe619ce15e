"""Pages of one ranked list, addressed by an opaque cursor (query hash, rank offset).

`Searcher` today ranks with `k` only, so page n+1 is the list ranked with k = offset + size + 1,
cut at the offset: the same one ranking every time, never a second ranking path. The cursor
names its query, so it cannot be replayed against another. The lead moves this into `Query`
(issue 10: `Query.cursor`), and this module then shrinks to encoding and decoding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from imgsearch.errors import ImgsearchError

T = TypeVar("T")
MAX_OFFSET = 10_000  # deeper than anyone scrolls; bounds the k of one ranking


class CursorError(ImgsearchError):
    """A cursor that is garbled, or that belongs to another query (HTTP 400)."""


@dataclass(frozen=True)
class Page:
    """`items` at ranks offset+1..offset+len; `next` is the cursor of the page after, or None."""

    items: Sequence[object]
    offset: int
    next: str | None


def query_key(*parts: object) -> str:
    """A short stable hash of everything that defines a ranking (terms, example, settings)."""
    raw = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode(key: str, offset: int) -> str:
    raw = json.dumps({"q": key, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, key: str) -> int:
    """The rank offset in `cursor` (0 without one); CursorError if it is not this query's."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        offset = int(data["o"])
        owner = str(data["q"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CursorError(f"cursor {cursor[:40]!r} is not valid; start the search again") from None
    if owner != key:
        raise CursorError("the cursor belongs to another query; start the search again")
    if not 0 <= offset <= MAX_OFFSET:
        raise CursorError(f"cursor offset {offset} is out of range (0..{MAX_OFFSET})")
    return offset


def page(rank: Callable[[int], Sequence[T]], key: str, cursor: str | None, size: int) -> Page:
    """One page of the list `rank(k)` returns (its best k, best first)."""
    offset = decode(cursor, key)
    ranked = rank(offset + size + 1)  # one more than shown: is there a next page?
    items = list(ranked[offset : offset + size])
    more = len(ranked) > offset + size and offset + size <= MAX_OFFSET
    return Page(items, offset, encode(key, offset + size) if more else None)
