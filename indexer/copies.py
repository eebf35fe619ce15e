"""Byte-identical copies share one vector: two files, two entries, one embedding.

Candidates are files with the same size and partial hash (indexer.walk.fingerprint, already
known for every decoded file); a full-content hash confirms them, so the common case (no copy)
costs one query per batch and no extra reading.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgsearch import lazy
from imgsearch.filehash import content_hash
from imgsearch.library import ImageRecord, Library

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py


log = logging.getLogger(__name__)


@dataclass
class _Known:
    path: str
    digest: str | None
    vector: npt.NDArray[np.float32] | None  # None: embedded later in this batch
    row_id: int | None = None  # a stored row (its digest may need saving)


@dataclass(frozen=True)
class Resolution:
    """For each record of a batch: a vector to reuse, or the index of the earlier record in
    the batch whose embedding it shares, or neither (embed it); plus its content hash."""

    vectors: list[npt.NDArray[np.float32] | None]
    same_as: list[int | None]
    digests: list[str | None]

    def to_embed(self) -> list[int]:
        return [
            i for i, (v, s) in enumerate(zip(self.vectors, self.same_as)) if v is None and s is None
        ]


class CopyFinder:
    """Per run: remembers what this run embedded, asks the library for stored candidates."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.seen: dict[tuple[int, str], list[_Known]] = {}

    def resolve(self, records: Sequence[ImageRecord]) -> Resolution:
        n = len(records)
        vectors: list[npt.NDArray[np.float32] | None] = [None] * n
        same_as: list[int | None] = [None] * n
        digests: list[str | None] = [None] * n
        stored = self.library.copies_of((r.size, r.fingerprint) for r in records)
        new_digests: dict[int, str] = {}
        batch: dict[tuple[int, str], list[tuple[int, _Known]]] = {}
        for i, rec in enumerate(records):
            key = (rec.size, rec.fingerprint)
            candidates = [
                _Known(c.path, c.content_hash, c.vector, c.id)
                for c in stored.get(key, ())
                if c.path != rec.path
            ]
            candidates += self.seen.get(key, [])
            earlier = batch.get(key, [])
            if candidates or earlier:
                digests[i] = _digest(rec.path)
            if digests[i] is not None:
                for cand in candidates:
                    if cand.digest is None:
                        cand.digest = _digest(cand.path)
                        if cand.digest and cand.row_id is not None:
                            new_digests[cand.row_id] = cand.digest
                    if cand.digest == digests[i] and cand.vector is not None:
                        vectors[i] = cand.vector
                        break
                else:
                    for j, known in earlier:
                        if known.digest is None:
                            known.digest = digests[j] = _digest(records[j].path)
                        if known.digest == digests[i]:
                            same_as[i] = same_as[j] if same_as[j] is not None else j
                            vectors[i] = vectors[j]
                            break
            batch.setdefault(key, []).append((i, _Known(rec.path, digests[i], vectors[i])))
        self.library.set_content_hashes(new_digests)
        return Resolution(vectors, same_as, digests)

    def remember(self, records: Sequence[ImageRecord]) -> None:
        """Records stored by this run (with their vectors) become candidates for later batches."""
        for rec in records:
            self.seen.setdefault((rec.size, rec.fingerprint), []).append(
                _Known(rec.path, rec.content_hash, rec.vector)
            )


def _digest(path: str) -> str | None:
    try:
        return content_hash(path)
    except OSError as exc:
        log.info("cannot hash %r to compare copies: %s", path, exc)
        return None
