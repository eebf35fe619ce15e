"""Shards -> library: the one writer of a distributed run (indexer.rayengine, sparkengine).

Rows are stored as indexer.pipeline stores a local batch: Library.store per shard,
byte-identical copies share a stored vector, tags and smart albums follow each batch, progress
after each. Shards an interrupted run left are read first, for the rows whose file is unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgsearch.errors import ImgsearchError
from imgsearch.interrupts import check as check_interrupt
from imgsearch.library import FailedRecord, ImageRecord, Library
from indexer import shards

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder
    from indexer.pipeline import IndexResult, Progress
    from indexer.walk import FileEntry

log = logging.getLogger(__name__)


class ShardWriter:
    """The one writer: shard rows -> Library.store, as indexer.pipeline's batches are stored
    (byte-identical copies share a stored vector, tags and albums follow each batch)."""

    def __init__(
        self,
        library: Library,
        work: Sequence[tuple[FileEntry, bool]],
        result: IndexResult,
        skip: Callable[[str, str], None],
        on_progress: Callable[[Progress], None] | None,
        owners: dict[str, int | None],
    ) -> None:
        from indexer.copies import CopyFinder

        self.library = library
        self.is_update = {e.path: upd for e, upd in work}
        self.total = len(work)
        self.result = result
        self.skip = skip
        self.on_progress = on_progress
        self.owners = owners
        self.copies = CopyFinder(library)
        self.seen: set[str] = set()
        self.done = 0
        self.started = time.perf_counter()

    def add(self, rows: Sequence[shards.ShardRow]) -> None:
        from imgsearch.clip.indexing import update_new
        from indexer.pipeline import Progress, _share_copies, _stat

        result = self.result
        records: list[ImageRecord] = []
        failed: list[FailedRecord] = []
        for row in rows:
            if row.path in self.seen or row.path not in self.is_update:
                continue  # never twice, never a file this run did not plan
            self.seen.add(row.path)
            root_id = self.owners.get(row.path)
            if row.vector is None:
                if not os.path.lexists(row.path):
                    self.done += 1  # vanished since the walk: nothing to record
                    continue
                self.skip(row.path, row.reason or "not embedded")
                size, mtime = _stat(row.path)
                failed.append(FailedRecord(row.path, size, mtime, row.reason or "", root_id))
                continue
            records.append(
                ImageRecord(
                    path=row.path, size=row.size, mtime_ns=row.mtime_ns,
                    fingerprint=row.fingerprint or "", width=row.width or 0,
                    height=row.height or 0, taken_at=row.taken_at, vector=row.vector,
                    root_id=root_id, meta=row.meta, phash=row.phash,
                )
            )  # fmt: skip
        shared_before = result.shared
        records = _share_copies(self.copies, records, None, result)
        self.library.store(records, failed)
        if records:
            stored = self.library.known_files(paths=[r.path for r in records])
            tagged, joined = update_new(self.library, [k.id for k in stored.values()])
            result.tagged += tagged
            result.album_added += joined
        self.copies.remember(records)
        for rec in records:
            if self.is_update[rec.path]:
                result.updated += 1
            else:
                result.added += 1
        result.embedded += len(records) - (result.shared - shared_before)
        self.done += len(records) + len(failed)
        result.embed_seconds = time.perf_counter() - self.started
        if self.on_progress:
            self.on_progress(
                Progress(
                    self.done, self.total, len(result.skipped), result.embedded,
                    result.embed_seconds,
                )
            )  # fmt: skip
        check_interrupt()  # the shard is stored and counted: a swallowed Ctrl-C stops here


def import_leftovers(
    writer: ShardWriter, work: Sequence[tuple[FileEntry, bool]], folder: Path, model: str
) -> tuple[list[FileEntry], list[Path]]:
    """Import what an interrupted run's shards hold for this run's files: rows of the same
    model whose file still has the size and mtime the worker saw. Returns the files still to
    embed, and the shard files read (deleted once the run is through)."""
    found = sorted(folder.glob(f"*{shards.SUFFIX}")) if folder.is_dir() else []
    wanted = {e.path: (e.size, e.mtime_ns) for e, _ in work}
    taken: set[str] = set()
    for path in found:
        try:
            rows = shards.read(path, unit=None, model=model)
        except ImgsearchError as err:  # another model's, or damaged: embedded again
            log.info("not reusing %s: %s", path, err)
            continue
        rows = [r for r in rows if wanted.get(r.path) == (r.size, r.mtime_ns)]
        rows = [r for r in rows if r.path not in taken]
        if rows:
            writer.add(rows)
        taken.update(r.path for r in rows)
    return [e for e, _ in work if e.path not in taken], found


# An engine's part of a distributed run: embed `units` with the model (name, weights) and the
# settings, writing their shards into the folder under the run key, and hand each finished
# shard to the writer.
Dispatch = Callable[[Sequence[shards.Unit], str, str, "Settings", str, Path, ShardWriter], None]


def embedder(
    dispatch: Dispatch,
    *,
    shard_dir: Path | None,
    shard_size: int,
    check: Callable[[], object] = lambda: None,
) -> Callable[..., Any]:
    """indexer.pipeline.run's `embed_all` for a distributed engine: `check` first (is the engine
    installed? before the library is touched), then the driver loads the model (checking the
    library's), imports leftover shards, plans units of the rest, lets `dispatch` embed them,
    and deletes the shards once imported. Only `check` and `dispatch` differ per engine."""

    def embed_all(
        library: Library,
        work: Sequence[tuple[FileEntry, bool]],
        settings: Settings,
        load_encoder: Callable[[], Encoder],
        model: tuple[str, str] | None,
        result: IndexResult,
        skip: Callable[[str, str], None],
        on_progress: Callable[[Progress], None] | None,
        owners: dict[str, int | None],
    ) -> Encoder:
        check()
        from indexer.pipeline import adopt

        encoder = load_encoder()  # the driver's copy: checks the library, caches the export
        adopt(library, encoder, settings, library.model_spec())
        spec = encoder.spec
        name, weights = model or (spec.name, spec.pretrained)
        key = shards.model_key(spec, settings)
        folder = Path(shard_dir or library.path / shards.SHARD_DIR)
        writer = ShardWriter(library, work, result, skip, on_progress, owners)
        rest, leftovers = import_leftovers(writer, work, folder, key)
        units = shards.plan_units(rest, key, shard_size)
        if units:
            dispatch(units, name, weights, settings, key, folder, writer)
        finish(folder, [*leftovers, *(shards.shard_path(folder, u) for u in units)])
        return encoder

    return embed_all


def finish(folder: Path, paths: Sequence[Path]) -> None:
    """Delete the imported shards (a retry of a finished task may have rewritten one)."""
    for path in paths:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


__all__ = ["Dispatch", "ShardWriter", "embedder", "finish", "import_leftovers"]
