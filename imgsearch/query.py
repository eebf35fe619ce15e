"""The one query value: weighted text and image terms, filters, a cutoff policy, k and a cursor.

The CLI parser (`parse`), `Searcher`'s typed arguments and the HTTP API (`Query.from_json`)
all build a `Query`; `Searcher.search(query)` is the only place that ranks.

The language, word by word (shell words, or `split_words` for one typed string):
  dog + 0.5*beach - people     terms joined by + and -, optional weights N*term
  @holiday.jpg                 an image term
  after:2021-06 before:2022    filters: KEY:VALUE, `|` for OR inside a value,
  -camera:pixel                a leading `-` negates a filter (a lone `-` subtracts a term)
  "note:1"                     a word with a space, or quoted in `split_words`, is text
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from imgsearch.errors import ImgsearchError

# key -> what it matches (the README and the unknown-key error list these)
FILTER_KEYS: dict[str, str] = {
    "after": "taken on or after a date: after:2021-06",
    "before": "taken before a date: before:2022",
    "year": "taken in a year: year:2023|2024",
    "month": "taken in a month of any year: month:7",
    "camera": "camera make or model contains: camera:pixel",
    "lens": "lens contains: lens:50mm",
    "in": "inside a folder: in:~/trips",
    "ext": "file type: ext:heic|jpg",
    "has": "has a kind of metadata: has:gps, has:date, has:camera",
    "near": "taken within a distance of a place: near:38.72,-9.14,5km",
    "tag": "has a tag (imgsearch tag): tag:beach",
    "album": "is in a smart album: album:family",
}
_WEIGHT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*\*\s*(.+)$", re.S)
_FILTER = re.compile(r"^(-?)([a-z]+):(\S.*)$", re.S)


class QueryError(ImgsearchError):
    """A query that cannot be understood; the CLI exits 2, the API answers 400."""


@dataclass(frozen=True)
class Term:
    """One part of a query: text or image file, with a weight (negative to push away)."""

    kind: str  # "text" | "image"
    value: str
    weight: float = 1.0


@dataclass(frozen=True)
class Filter:
    """KEY:VALUE; `values` are alternatives (OR); `negate` keeps what does not match."""

    key: str
    values: tuple[str, ...]
    negate: bool = False

    def __str__(self) -> str:
        return f"{'-' if self.negate else ''}{self.key}:{'|'.join(self.values)}"


@dataclass(frozen=True)
class Query:
    """What to look for, where, how many, and where a page starts."""

    terms: tuple[Term, ...] = ()
    filters: tuple[Filter, ...] = ()
    cutoff: str = "none"  # "none" | "auto" | a score, e.g. "0.25"
    k: int | None = None  # a cap: the cutoff may keep fewer
    cursor: str | None = None  # from the previous page's result
    templates: str | None = None  # prompt templates for text terms (None: the setting)
    min_score: float | None = None

    def __post_init__(self) -> None:
        check_cutoff(self.cutoff)
        for flt in self.filters:
            if flt.key not in FILTER_KEYS:
                raise QueryError(unknown_key(flt.key))
        if self.k is not None and self.k < 1:
            raise QueryError(f"k must be at least 1, got {self.k}")

    def with_terms(self, *terms: Term) -> Query:
        return replace(self, terms=self.terms + tuple(terms))

    def ranking_key(self) -> str:
        """Identity of the ranked list (everything but k and cursor): cursors check it."""
        data = asdict(self)
        data.pop("k"), data.pop("cursor")
        raw = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.blake2b(raw, digest_size=8).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "terms": [asdict(t) for t in self.terms],
            "filters": [asdict(f) | {"values": list(f.values)} for f in self.filters],
            "cutoff": self.cutoff,
            "k": self.k,
            "cursor": self.cursor,
            "templates": self.templates,
            "min_score": self.min_score,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Query:
        """From the HTTP API's JSON: either `q` (the typed language) or explicit parts."""
        try:
            base = parse_text(str(data["q"])) if data.get("q") else cls()
            terms = base.terms + tuple(
                Term(str(t["kind"]), str(t["value"]), float(t.get("weight", 1.0)))
                for t in data.get("terms", ())
            )
            filters = base.filters + tuple(
                Filter(str(f["key"]), tuple(map(str, f["values"])), bool(f.get("negate")))
                for f in data.get("filters", ())
            )
            k = data.get("k")
            min_score = data.get("min_score")
            return cls(
                terms=terms,
                filters=filters,
                cutoff=str(data.get("cutoff", "none")),
                k=int(k) if k is not None else None,
                cursor=data.get("cursor"),
                templates=data.get("templates"),
                min_score=float(min_score) if min_score is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QueryError(f"bad query JSON: {exc}") from exc


def negated_filter_word(word: str) -> bool:
    """True for `-key:value` with a known key (a negated filter, not a command-line option)."""
    m = _FILTER.match(word)
    return bool(m and m.group(1) and m.group(2) in FILTER_KEYS)


def unknown_key(key: str) -> str:
    known = ", ".join(f"{k}:" for k in FILTER_KEYS)
    return f"unknown filter '{key}:'; known filters: {known} (quote a word to search it as text)"


def check_cutoff(value: str) -> None:
    """auto, none or a cosine score, else QueryError (imgsearch.cutoff says why)."""
    from imgsearch.cutoff import parse_policy
    from imgsearch.errors import ImgsearchError

    try:
        parse_policy(value)
    except ImgsearchError as exc:
        raise QueryError(str(exc)) from None


@dataclass
class _Words:
    """Words of a query with whether each was quoted (quoted words are always text)."""

    words: list[str] = field(default_factory=list)
    quoted: list[bool] = field(default_factory=list)


def split_words(text: str) -> _Words:
    """Split one typed query (web search box) like a shell: quotes group, `+`/`-` stand alone."""
    out = _Words()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                raise QueryError(f"unbalanced {ch} in the query")
            out.words.append(text[i + 1 : end])
            out.quoted.append(True)
            i = end + 1
        else:
            j = i
            while j < n and not text[j].isspace():
                if text[j] in "\"'" and j > i and text[j - 1] == ":":  # key:"a value"
                    end = text.find(text[j], j + 1)
                    if end < 0:
                        raise QueryError(f"unbalanced {text[j]} in the query")
                    j = end + 1
                    continue
                j += 1
            word = text[i:j]
            if m := re.match(r"^(-?[a-z]+:)([\"'])(.*)\2$", word, re.S):
                word = m.group(1) + m.group(3)
            out.words.append(word)
            out.quoted.append(False)
            i = j
    return out


def parse_text(text: str, **options: Any) -> Query:
    """A typed query string -> Query."""
    words = split_words(text)
    return parse(words.words, quoted=words.quoted, **options)


def parse(words: Sequence[str], *, quoted: Sequence[bool] | None = None, **options: Any) -> Query:
    """Shell words like  dog + "0.5*beach" - people after:2021 -camera:pixel  -> Query.

    Words not separated by an operator belong to the same text ("a dog" == a dog). A word
    holding a space (quoted in the shell) is text, never a filter.
    """
    terms: list[Term] = []
    filters: list[Filter] = []
    sign = 1.0
    pending: list[str] = []
    typed = quoted is not None  # split_words marked quotes; shell words show them as spaces
    quoted = list(quoted) if quoted is not None else [False] * len(words)

    def close() -> None:
        nonlocal pending
        if not pending:
            return
        text = " ".join(pending).strip()
        pending = []
        weight = 1.0
        if m := _WEIGHT.match(text):
            weight, text = float(m.group(1)), m.group(2).strip()
        if not text:
            raise QueryError("empty query part; write e.g.  imgsearch query dog + beach - people")
        kind, value = ("image", text[1:]) if text.startswith("@") else ("text", text)
        if kind == "image" and not value:
            raise QueryError("'@' needs a file name: @photo.jpg")
        terms.append(Term(kind, value, sign * weight))

    for word, was_quoted in zip(words, quoted):
        if not was_quoted and word in ("+", "-"):
            close()
            sign = 1.0 if word == "+" else -1.0
            continue
        spaced = not typed and any(c.isspace() for c in word)
        m = None if was_quoted or spaced else _FILTER.match(word)
        if m is not None:
            negate, key, value = m.group(1) == "-", m.group(2), m.group(3)
            if key not in FILTER_KEYS:
                raise QueryError(unknown_key(key))
            values = tuple(v for v in value.split("|") if v)
            if not values:
                raise QueryError(f"filter {key}: needs a value, e.g. {FILTER_KEYS[key]}")
            close()
            filters.append(Filter(key, values, negate))
            continue
        if not word.strip():
            raise QueryError("empty query part; write e.g.  imgsearch query dog + beach - people")
        pending.append(word)
    if words and not quoted[-1] and words[-1] in ("+", "-"):
        raise QueryError(
            f"empty query part after '{words[-1]}'; "
            f"write e.g.  imgsearch query dog + beach - people"
        )
    close()
    return Query(terms=tuple(terms), filters=tuple(filters), **options)


# ---- cursors ----------------------------------------------------------------------------------
def make_cursor(query: Query, score: float, row_id: int, seen: int) -> str:
    """An opaque cursor: where the next page starts in one ranked list (after this hit)."""
    raw = json.dumps([query.ranking_key(), score, row_id, seen]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(query: Query) -> tuple[float, int, int] | None:
    """(score, id, hits already shown) of the last hit of the previous page, or None."""
    if not query.cursor:
        return None
    try:
        pad = "=" * (-len(query.cursor) % 4)
        key, score, row_id, seen = json.loads(base64.urlsafe_b64decode(query.cursor + pad))
        if key != query.ranking_key():
            raise ValueError("the cursor belongs to another query")
        return float(score), int(row_id), int(seen)
    except (ValueError, TypeError) as exc:
        raise QueryError(f"bad cursor: {exc}") from exc
