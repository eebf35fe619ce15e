"""walk -> diff -> decode (worker pool) -> embed (batches) -> store, for `imgsearch index`.

Unchanged files cost one stat and never load the model; moved files keep their vectors; every
batch is committed on its own, so a killed run keeps what it finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imgsearch import lazy, modelspec
from imgsearch.errors import ImgsearchError
from imgsearch.folders import missing_roots
from imgsearch.interrupts import check as check_interrupt
from imgsearch.interrupts import watched
from imgsearch.library import (
    ERROR,
    OK,
    TEXT_ENCODER_DIR,
    FailedRecord,
    ImageRecord,
    KnownFile,
    Library,
    now,
)
from imgsearch.paths import canonical
from imgsearch.vectors import IndexParams
from indexer import lifeline
from indexer import roots as roots_mod
from indexer.copies import CopyFinder
from indexer.walk import FileEntry, WalkSkip, fingerprint, scan

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    import numpy as np

    from imgsearch.config import Settings
    from imgsearch.decode import Decoded, DecodeFailed
    from imgsearch.encoder import Encoder
    from imgsearch.modelspec import ModelSpec, PreprocessSpec
    from indexer.gpudecode import DeviceDecoder, JpegPayload
else:
    np = lazy.numpy  # loaded on first use: see imgsearch/lazy.py

log = logging.getLogger(__name__)
# Images decoded ahead while the model loads: 16 batches of 32 at 224 px hold ~75 MB.
STARTUP_BATCHES = 16
# Decoders beside a model on the CPU run at this niceness: the model's runs keep their cores
# and the decoders take what those leave (a run's uneven halves, the writes between batches).
# 500 photos, ViT-B-32-256, 2 cores: 31.0-33.2 s against 33.4-35.6 s at 0 (benchmarks/ONNX.md).
DECODE_NICE = 19
# ... unless they starve: when the consumer has waited this long for decoded images, and this
# share of the stream's time, other programs have the cores, and the decoders go back to normal
# priority (a new pool takes every chunk not yet started).
STARVED_S, STARVED_SHARE = 2.0, 0.25


@dataclass
class IndexResult:
    """What one run did; `skipped` holds this run's (path, reason) failures."""

    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, int, str]] = field(default_factory=list)  # (root, images, reason)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old root, new root)
    shared: int = 0  # byte-identical copies that reused a stored vector
    metadata: int = 0  # rows whose photo metadata was read again (no embedding)
    tagged: int = 0  # tags given to them for the label sets the library applies
    album_added: int = 0  # smart-album memberships they gained
    embedded: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0  # decode + embed + store, after the model loaded

    def counts(self) -> dict[str, int]:
        return dict(
            added=self.added,
            updated=self.updated,
            moved=self.moved,
            removed=self.removed,
            skipped=len(self.skipped),
            unchanged=self.unchanged,
        )


@dataclass(frozen=True)
class Progress:
    """Emitted after each stored batch. `embedded / seconds` is the run's embedding rate, the
    same figure the summary prints (IndexResult.embedded / embed_seconds)."""

    done: int
    total: int
    failed: int
    embedded: int = 0
    seconds: float = 0.0


@dataclass
class Plan:
    """The diff between the tree on disk and the library."""

    to_embed: list[tuple[FileEntry, bool]]  # (entry, is_update)
    moves: list[tuple[int, str, int, int, int | None]]  # (id, new path, size, mtime, root id)
    to_remove: list[int]
    unchanged: int


def choose_model(library: Library, settings: Settings, *, explicit: bool) -> tuple[str, str]:
    """The library's own model, unless the user named one; naming a different one is an error."""
    from imgsearch.encoder import normalize_model

    stored = library.model_spec()
    if stored is None:
        return normalize_model(settings.model, settings.pretrained)
    if not explicit:
        return stored.name, stored.pretrained
    name, weights = normalize_model(settings.model, settings.pretrained)
    if (name, weights) != (stored.name, stored.pretrained):
        raise library.model_mismatch(stored.label(), f"{name} / {weights}" if weights else name)
    return name, weights


def plan(
    library: Library,
    targets: Sequence[roots_mod.Target],
    entries: Sequence[FileEntry],
    unreadable: Sequence[str] = (),
    *,
    owners: dict[str, int | None] | None = None,
    gone_roots: Sequence[int] = (),
) -> Plan:
    """Compare a scan with the stored rows the same targets cover.

    Rows of the scanned roots (under them, or owned by them through a symlink) that the scan did
    not see are deleted, unless a new file has their content (a move). Rows of `gone_roots`
    (missing roots) are move candidates only: a renamed root indexed under its new name costs
    no embedding. `unreadable` paths were seen but could not be taken; they are not deleted.
    """
    owners = owners or {}
    scope = library.known_files(
        under=[t.path for t in targets if t.is_dir],
        root_ids=[t.root_id for t in targets if t.is_root and t.root_id is not None],
        paths=[t.path for t in targets if not t.is_dir],
    )
    outside = library.known_files(
        root_ids=(), paths=[e.path for e in entries if e.path not in scope]
    )
    seen: set[str] = set(unreadable)
    new: list[FileEntry] = []
    to_embed: list[tuple[FileEntry, bool]] = []
    unchanged = 0
    for entry in entries:
        seen.add(entry.path)
        row = scope.get(entry.path) or outside.get(entry.path)
        if row is None:
            new.append(entry)
        elif row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            unchanged += 1
        else:
            to_embed.append((entry, True))
    missing = [row for path, row in scope.items() if path not in seen]
    elsewhere = library.known_files(root_ids=list(gone_roots)) if gone_roots and new else {}
    candidates = missing + [r for p, r in elsewhere.items() if p not in scope]
    moves, matched = _match_moves(new, candidates, owners)
    to_embed.extend((e, False) for e in new if e.path not in matched)
    moved_ids = {m[0] for m in moves}
    to_remove = [row.id for row in missing if row.id not in moved_ids]
    return Plan(to_embed, moves, to_remove, unchanged)


def _match_moves(
    new: Sequence[FileEntry], missing: Sequence[KnownFile], owners: dict[str, int | None]
) -> tuple[list[tuple[int, str, int, int, int | None]], set[str]]:
    """New paths whose content (size + partial hash) equals a vanished row's are moves."""
    by_size: dict[int, list[KnownFile]] = {}
    for row in missing:
        if row.status == OK and row.fingerprint:
            by_size.setdefault(row.size, []).append(row)
    moves: list[tuple[int, str, int, int, int | None]] = []
    matched: set[str] = set()
    for entry in new:
        candidates = by_size.get(entry.size)
        if not candidates:
            continue
        try:
            digest = fingerprint(entry.path, entry.size)
        except OSError:
            continue
        for row in candidates:
            if row.fingerprint == digest:
                candidates.remove(row)
                moves.append(
                    (row.id, entry.path, entry.size, entry.mtime_ns, owners.get(entry.path))
                )
                matched.add(entry.path)
                break
    return moves, matched


def _decode_chunk(
    paths: Sequence[str], spec: PreprocessSpec, max_pixels: int
) -> list[Decoded | DecodeFailed]:
    from imgsearch.decode import decode

    return [decode(p, spec, max_pixels=max_pixels) for p in paths]


def _prepare_chunk(
    paths: Sequence[str], spec: PreprocessSpec, max_pixels: int
) -> list[JpegPayload | Decoded | DecodeFailed]:
    """GPU decoding: workers only read JPEG bytes and headers (other files decode here)."""
    from indexer.gpudecode import prepare

    return [prepare(p, spec, max_pixels=max_pixels) for p in paths]


def _decode_context(for_device: bool = False) -> Any:
    """The decode workers' multiprocessing context. forkserver: workers never inherit torch's
    threads or a half-held lock from this process; the server imports the decoder once."""
    import multiprocessing  # here: an unchanged re-index starts no pool

    ctx = multiprocessing.get_context("forkserver")
    decoder_module = "indexer.gpudecode" if for_device else "imgsearch.decode"
    ctx.set_forkserver_preload(["indexer.forkserver_init", decoder_module])
    return ctx


def start_decode_server() -> None:
    """Start the decoders' fork server now: it imports numpy and Pillow (~0.3 s) in its own
    process while this one walks and plans, instead of when the first worker is forked."""
    from multiprocessing import forkserver

    _decode_context()
    forkserver.ensure_running()


class DecodeStream:
    """Decoded images in input order from a process pool, started on construction.

    The first `startup` images are submitted at once, so decoding runs while the caller loads
    the model; afterwards at most `lookahead` images are in flight (flat memory). With
    `for_device`, JPEGs come back as raw payloads for indexer.gpudecode.DeviceDecoder.

    `gated`: the next `lookahead` images are submitted only when the consumer has taken every
    decoded one and asks for more, i.e. between its model batches. On CPU the model's threads
    and the decoders share the cores, and decoders running under the model stall its OpenMP
    threads at every barrier: 500 12 MP photos on 2 cores took 41.8-48.2 s gated (mean 45.2),
    45.3-48.4 s with the workers at nice 19 (46.5) and 47.3-50.1 s overlapped (48.7) (torch).

    `nice`: the workers' niceness (DECODE_NICE beside any model on the CPU: onnxruntime's
    single-threaded runs have no barriers to stall, and torch's were not slower); once the
    consumer has waited STARVED_S (and STARVED_SHARE of the time), the stream goes back to 0.
    """

    def __init__(
        self,
        paths: Sequence[str],
        spec: PreprocessSpec,
        *,
        workers: int,
        max_pixels: int,
        lookahead: int,
        startup: int = 0,
        for_device: bool = False,
        gated: bool = False,
        nice: int = 0,
    ) -> None:
        self.spec = spec
        self.for_device = for_device
        self.gated = gated
        self.nice = nice
        self._workers = workers
        self._waited = 0.0
        self._started = time.perf_counter()
        self._old_pools: list[ProcessPoolExecutor] = []
        self._work = _prepare_chunk if for_device else _decode_chunk
        self._args = (spec, max_pixels)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[Future[list[Any]], Sequence[str]]] = deque()
        self._inline = workers <= 1 and len(paths) < 8
        chunk = 16 if for_device else 4  # prepare costs ~1 ms a file: amortise the pickling
        self._chunks = iter([paths[i : i + chunk] for i in range(0, len(paths), chunk)])
        # gated: exactly the next batch; else enough to keep every worker busy
        self._max_pending = max(1 if gated else 2 * workers, lookahead // chunk)
        if self._inline:
            return
        self._pool = self._new_pool()
        self._fill(max(self._max_pending, startup // chunk))

    def _new_pool(self) -> ProcessPoolExecutor:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=_decode_context(self.for_device),
            initializer=lifeline.exit_with_run,
            initargs=(self.nice,),
        )

    def _fill(self, upto: int) -> None:
        assert self._pool is not None
        while len(self._pending) < upto and (part := next(self._chunks, None)) is not None:
            self._pending.append((self._pool.submit(self._work, part, *self._args), part))

    def backlog(self) -> int:
        """Images decoded and waiting to be taken (0 for inline decoding)."""
        return sum(len(f.result()) for f, _ in self._pending if f.done() and not f.cancelled())

    def _result(self, fut: Future[list[Any]]) -> list[Any]:
        """A chunk's images; time spent waiting for it counts towards starvation."""
        if not fut.done():
            t0 = time.perf_counter()
            fut.result()
            self._waited += time.perf_counter() - t0
        elapsed = time.perf_counter() - self._started
        if self.nice and self._waited >= STARVED_S and self._waited >= STARVED_SHARE * elapsed:
            self._renice()
        return fut.result()

    def _renice(self) -> None:
        """Other programs have the cores: chunks not yet started go to a pool at normal
        priority (the old one finishes what it has started, in order)."""
        assert self._pool is not None
        log.info("decoders waited %.1f s for the CPU: back at normal priority", self._waited)
        self.nice = 0
        old, self._pool = self._pool, self._new_pool()
        self._old_pools.append(old)
        moved: deque[tuple[Future[list[Any]], Sequence[str]]] = deque()
        for fut, part in self._pending:
            if fut.cancel():
                fut = self._pool.submit(self._work, part, *self._args)
            moved.append((fut, part))
        self._pending = moved
        old.shutdown(wait=False)

    def __iter__(self) -> Iterator[Decoded | DecodeFailed | JpegPayload]:
        if self._inline:
            for part in self._chunks:
                yield from self._work(part, *self._args)
            return
        try:
            while self._pending:
                done = self._result(self._pending.popleft()[0])
                if not self.gated:
                    self._fill(self._max_pending)
                yield from done
                if self.gated and not self._pending:
                    # the consumer has taken everything and asks for more: it is not computing
                    self._fill(self._max_pending)
        finally:
            self.close()

    def close(self) -> None:
        """Stop decoding (what is in flight is dropped) and shut the pool down."""
        for fut, _ in self._pending:
            fut.cancel()
        self._pending.clear()
        for pool in [*self._old_pools, *([self._pool] if self._pool is not None else [])]:
            pool.shutdown(wait=True, cancel_futures=True)
        self._old_pools.clear()
        self._pool = None

    def __enter__(self) -> DecodeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def device_decoder(settings: Settings, encoder: Encoder) -> DeviceDecoder | None:
    """The GPU JPEG decoder when settings and hardware allow it, else None (CPU workers)."""
    from indexer import gpudecode

    spec = encoder.spec.preprocess
    wanted = settings.decode == "gpu" or (
        settings.decode == "auto" and encoder.device.startswith("cuda")
    )
    if not wanted:
        return None
    if settings.decode == "gpu" and not encoder.device.startswith("cuda"):
        log.warning(
            "--decode gpu: the model runs on %s and CUDA is not available, so JPEGs are "
            "decoded with torchvision on the CPU (slower than --decode cpu)",
            encoder.device,
        )
    if not gpudecode.device_supported(spec):
        log.warning("GPU decoding does not support this model's preprocessing; decoding on CPU")
        return None
    dev = encoder.device if encoder.device.startswith("cuda") else "cpu"
    decoder = gpudecode.DeviceDecoder(spec, dev)
    try:
        decoder.probe()
    except ImgsearchError as err:
        log.warning("%s", err)
        return None
    return decoder


@watched()  # a Ctrl-C that something swallowed still stops the run at a batch boundary
def run(
    library: Library,
    roots: Sequence[str],
    settings: Settings,
    *,
    load_encoder: Callable[[], Encoder],
    load_torch: Callable[[], Encoder] | None = None,
    prefetch: Callable[[], None] | None = None,
    model: tuple[str, str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    allow_nested: bool = False,
    embed_all: Callable[..., Encoder] | None = None,
) -> IndexResult:
    """Index `roots` into `library` (caller holds the write lock); no roots: every root the
    library has. New folders become roots of the library.

    `load_encoder` gives the image encoder (torch, or imgsearch.imageonnx's); `load_torch` the
    torch Encoder the text-tower export needs (default: `load_encoder`). `model` = (name,
    weights) that they load, when known: decoding can then start while the model loads.
    `prefetch` starts loading that model in the background; a first run into a library (it
    has vectors to make) calls it at once, and starts the decoders' server, so that both load
    while this thread imports SQLAlchemy, walks and plans (the first batch ~0.5 s sooner).
    `embed_all`: the embed stage, with `_embed_all`'s arguments (indexer.rayengine's runs on
    Ray); planning, moves, deletions and the ANN index stay here.
    """
    started, t0 = now(), time.perf_counter()
    result = IndexResult()
    if embed_all is None and roots and library.vector_count() == 0:
        if prefetch is not None:
            prefetch()
        if settings.decode == "cpu" or (_model_on_cpu(settings) and settings.decode != "gpu"):
            start_decode_server()  # the CPU decoders' server (GPU decoding preloads another)
    targets, missing = roots_mod.plan_targets(library, roots)
    roots_mod.check_location(
        str(library.path), [t.path for t in targets if t.is_dir], allowed=allow_nested
    )
    reported = {m.root.id for m in missing}
    missing += [m for m in missing_roots(library) if m.root.id not in reported]
    targets = _register_roots(library, targets)
    roots = [t.path for t in targets]
    known_roots = library.roots()
    by_id = {r.id: r for r in known_roots}
    counts = library.counts_by_root() if missing else {}
    for gone in missing:
        result.missing.append((gone.root.path, counts.get(gone.root.id, (0, 0))[0], gone.reason))

    def owner(path: str, scanned_root: str = "") -> int | None:
        found = roots_mod.owner_of(path, known_roots)
        if found is not None:
            return found.id
        holder = roots_mod.owner_of(scanned_root, known_roots) if scanned_root else None
        return holder.id if holder is not None else None

    def skip(path: str, reason: str) -> None:
        result.skipped.append((path, reason))
        if on_skip:
            on_skip(path, reason)

    walk_failures: list[FailedRecord] = []

    def walk_skip(s: WalkSkip) -> None:
        skip(s.path, s.reason)
        size, mtime = _stat(s.path)
        walk_failures.append(FailedRecord(s.path, size, mtime, s.reason, owner(s.path)))

    excluded = [r.path for r in known_roots if r.kind == "excluded"]
    entries = list(
        scan(
            roots,
            skip_hidden=settings.skip_hidden,
            follow_symlinks=settings.follow_symlinks,
            on_skip=walk_skip,
            exclude=[*excluded, canonical(library.path)],
        )
    )
    owners = {e.path: owner(e.path, e.root) for e in entries}
    gone_ids = [m.root.id for m in missing]
    todo = plan(
        library, targets, entries, [f.path for f in walk_failures], owners=owners,
        gone_roots=gone_ids,
    )  # fmt: skip
    if walk_failures:
        library.store([], walk_failures)
    result.unchanged = todo.unchanged
    library.move(todo.moves)
    result.moved = len(todo.moves)
    if todo.moves and missing:
        _drop_emptied_roots(library, missing, by_id, owners, todo, result)

    encoder: Encoder | None = None
    status = "interrupted"
    try:
        if todo.to_embed:
            encoder = (embed_all or _embed_all)(
                library, todo.to_embed, settings, load_encoder, model, result, skip, on_progress,
                owners,
            )  # fmt: skip
        library.remove(todo.to_remove)
        result.removed = len(todo.to_remove)
        result.metadata = _backfill_metadata(library, settings, on_status)

        library.ann.save(IndexParams.from_settings(settings))
        _ensure_text_encoder(library, encoder, load_torch or load_encoder, on_status)
        check_interrupt()
        status = "ok"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        status = "failed"  # an error, not an interruption: the run cannot go on as it is
        raise
    finally:
        result.seconds = time.perf_counter() - t0
        try:
            indexed = [(t.root_id, t.device) for t in targets if t.is_root and t.root_id]
            library.record_run(
                started, roots, result.counts(), status, indexed if status == "ok" else ()
            )
        except Exception:  # never hide the real error behind a bookkeeping one
            if status == "ok":
                raise
    return result


def _register_roots(
    library: Library, targets: Sequence[roots_mod.Target]
) -> list[roots_mod.Target]:
    """New folders become roots; a forgotten (excluded) folder indexed again is a part of its
    root again."""
    from dataclasses import replace

    excluded = {r.path: r for r in library.roots() if r.kind == "excluded"}
    out = []
    for target in targets:
        if target.path in excluded:  # asked for by name
            library.drop_root(excluded[target.path].id)
        if target.is_root and target.root_id is None:
            target = replace(target, root_id=library.add_root(target.path, target.device))
        out.append(target)
    return out


def _drop_emptied_roots(
    library: Library,
    missing: Sequence[roots_mod.MissingRoot],
    by_id: dict[int, Any],
    owners: dict[str, int | None],
    todo: Plan,
    result: IndexResult,
) -> None:
    """A missing root whose every image moved was renamed: it is dropped, the move reported."""
    counts = library.counts_by_root()
    for gone in missing:
        if sum(counts.get(gone.root.id, (0, 0))) == 0:
            new_owners = {owners.get(m[1]) for m in todo.moves}
            new = next((by_id[i].path for i in new_owners if i in by_id), None)
            library.drop_root(gone.root.id)
            result.missing = [m for m in result.missing if m[0] != gone.root.path]
            result.renamed.append((gone.root.path, new or "?"))


def _embed_all(
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
    from imgsearch.decode import Decoded, DecodeFailed
    from indexer.gpudecode import JpegPayload

    is_update = {e.path: upd for e, upd in work}
    batch_size = settings.batch_size
    paths = [e.path for e, _ in work]
    encoder, on_device, stream = _load_and_decode(library, paths, settings, load_encoder, model)
    started = time.perf_counter()
    copies = CopyFinder(library)
    done_recs: list[ImageRecord] = []
    pixels: list[np.ndarray] = []
    payloads: list[JpegPayload] = []
    failed: list[FailedRecord] = []
    done = 0

    def fail(item: DecodeFailed) -> None:
        nonlocal done
        if not os.path.lexists(item.path):
            done += 1  # vanished since the walk: nothing to record
            return
        skip(item.path, item.reason)
        size, mtime = _stat(item.path)
        failed.append(FailedRecord(item.path, size, mtime, item.reason, owners.get(item.path)))

    def flush() -> None:
        nonlocal done
        records: list[ImageRecord] = []
        shared_before = result.shared
        if payloads:
            assert on_device is not None
            tensor, results = on_device(payloads)
            decoded = [r for r in results if isinstance(r, Decoded)]
            for r in results:
                if isinstance(r, DecodeFailed):
                    fail(r)
            if decoded:
                vectors = encoder.embed_pixels(tensor)
                gpu = [_record(r, v, owners.get(r.path)) for r, v in zip(decoded, vectors)]
                records += _share_copies(copies, gpu, None, result)
        if done_recs:
            records += _share_copies(
                copies,
                done_recs,
                lambda idx: encoder.embed_pixels(np.stack([pixels[i] for i in idx])),
                result,
            )
        library.store(records, failed)
        if records:  # tags and smart albums follow new photos, batch by batch (kill-safe)
            from imgsearch.clip.indexing import update_new

            stored = library.known_files(paths=[r.path for r in records])
            tagged, joined = update_new(library, [k.id for k in stored.values()])
            result.tagged += tagged
            result.album_added += joined
        copies.remember(records)
        for rec in records:
            if is_update[rec.path]:
                result.updated += 1
            else:
                result.added += 1
        result.embedded += len(records) - (result.shared - shared_before)
        done += len(records) + len(failed)
        done_recs.clear()
        pixels.clear()
        payloads.clear()
        failed.clear()
        result.embed_seconds = time.perf_counter() - started
        if on_progress:
            on_progress(
                Progress(
                    done, len(work), len(result.skipped), result.embedded, result.embed_seconds
                )
            )
        check_interrupt()  # the batch is stored and counted: a swallowed Ctrl-C stops here

    with stream:
        for item in stream:
            if isinstance(item, DecodeFailed):
                fail(item)
            elif isinstance(item, JpegPayload):
                payloads.append(item)
            else:
                done_recs.append(_record(item, np.empty(0, np.float32), owners.get(item.path)))
                pixels.append(item.pixels)
            if len(done_recs) + len(payloads) >= batch_size or len(failed) >= batch_size:
                flush()
    if done_recs or payloads or failed:
        flush()
    return encoder


def _load_and_decode(
    library: Library,
    paths: Sequence[str],
    settings: Settings,
    load_encoder: Callable[[], Encoder],
    model: tuple[str, str] | None,
) -> tuple[Encoder, DeviceDecoder | None, DecodeStream]:
    """Load the model with decoding already running when its input geometry is known (the
    library's model, or one this machine has loaded before); the loaded model's own spec,
    device and decoder are checked, and decoding restarts if the guess was wrong."""
    decoding = _stream_factory(paths, settings)
    stored = library.model_spec()
    expected = stored or (modelspec.remembered(*model) if model else None)
    on_cpu = _model_on_cpu(settings)
    early = None
    if expected and (on_cpu or settings.decode == "cpu"):
        early = decoding(expected.preprocess, on_cpu=on_cpu)
    try:
        encoder = load_encoder()
        adopt(library, encoder, settings, stored)
        on_device = device_decoder(settings, encoder)
    except BaseException:
        if early is not None:
            early.close()
        raise
    on_cpu = encoder.device == "cpu"
    wanted = (encoder.spec.preprocess, on_cpu)
    if early is not None and on_device is None and (early.spec, early.gated) == wanted:
        return encoder, on_device, early
    if early is not None:
        early.close()
    stream = decoding(encoder.spec.preprocess, on_cpu=on_cpu, for_device=on_device is not None)
    return encoder, on_device, stream


def adopt(library: Library, encoder: Encoder, settings: Settings, stored: ModelSpec | None) -> None:
    """The run's encoder joins the library: its model recorded or checked against the library's
    (`stored`), its precision noted (a warning where it mixes a lossy one with others)."""
    if stored is None:
        library.set_model_spec(encoder.spec, precision=settings.vector_precision)
    else:
        library.check_model(encoder.spec)
    notice = library.note_precision(getattr(encoder, "precision", "fp32"))
    if notice:
        log.warning("%s", notice)


def _stream_factory(paths: Sequence[str], settings: Settings) -> Callable[..., DecodeStream]:
    """The run's decode stream for a model's preprocessing: beside a model on the CPU, gated
    and at DECODE_NICE; beside a GPU, ahead of it at normal priority."""
    workers = settings.workers or (os.cpu_count() or 1)
    batch = settings.batch_size

    def decoding(spec: PreprocessSpec, *, on_cpu: bool, for_device: bool = False) -> DecodeStream:
        return DecodeStream(
            paths, spec, workers=workers, max_pixels=settings.max_pixels,
            lookahead=batch if on_cpu else 3 * batch, startup=STARTUP_BATCHES * batch,
            for_device=for_device, gated=on_cpu, nice=DECODE_NICE if on_cpu else 0,
        )  # fmt: skip

    return decoding


def _model_on_cpu(settings: Settings) -> bool:
    """Whether the model will run on the CPU, guessed without importing torch (an NVIDIA
    driver's device node means `auto` may pick CUDA; the loaded model's device is checked)."""
    return settings.device == "cpu" or (
        settings.device == "auto" and not os.path.exists("/dev/nvidiactl")
    )


def _ensure_text_encoder(
    library: Library,
    encoder: Encoder | None,
    load_encoder: Callable[[], Encoder],
    on_status: Callable[[str], None] | None,
) -> None:
    """Export the text tower for torch-free queries, also when an earlier run was killed before
    it could (then the model is loaded for it once; an unsupported model is not retried)."""
    from imgsearch import exports

    dest = library.path / TEXT_ENCODER_DIR
    spec = library.model_spec()
    if exports.installed(dest) or spec is None:
        return
    if exports.link_cached_text_encoder(dest, spec):
        return  # made by an earlier run into another library: no model needed
    if getattr(encoder, "model", None) is None:
        encoder = None  # the ONNX image encoder: the text export needs torch's model
    if encoder is None:
        if library.meta().get("text_export") == "unsupported":
            return
        encoder = load_encoder()
    status = exports.install_text_encoder(dest, encoder, on_status)
    if status == "unsupported":
        library.set_meta(text_export="unsupported")


def _record(item: Decoded, vector: np.ndarray, root_id: int | None) -> ImageRecord:
    from imgsearch.photohash import pack  # numpy at import: an unchanged re-index needs neither

    return ImageRecord(
        path=item.path, size=item.size, mtime_ns=item.mtime_ns, fingerprint=item.fingerprint,
        width=item.width, height=item.height, taken_at=item.taken_at,
        vector=np.asarray(vector, dtype=np.float32), root_id=root_id, meta=item.meta,
        phash=pack(item.phash) if item.phash is not None else None,
    )  # fmt: skip


def _backfill_metadata(
    library: Library, settings: Settings, on_status: Callable[[str], None] | None
) -> int:
    """Read the metadata of rows stored before it was kept (or by an older reader), and their
    perceptual hash (a small JPEG draft decode); nothing is embedded again. Returns how many
    rows were updated."""
    from imgsearch.photo import METADATA_VERSION

    stale = library.stale_metadata(METADATA_VERSION)
    if not stale:
        return 0
    from imgsearch.decode import DecodeFailed, read_file_metadata, read_file_phash
    from imgsearch.photohash import pack

    if on_status:
        on_status(f"reading photo metadata of {len(stale)} images indexed before it was kept ...")
    batch: list[tuple[int, str, Any]] = []
    hashes: dict[int, bytes] = {}
    done = 0
    for row_id, path in stale:
        meta = read_file_metadata(path, max_pixels=settings.max_pixels)
        if not isinstance(meta, DecodeFailed):
            batch.append((row_id, path, meta))
            if (phash := read_file_phash(path, max_pixels=settings.max_pixels)) is not None:
                hashes[row_id] = pack(phash)
        if len(batch) >= 500:
            library.set_metadata(batch, hashes)
            done += len(batch)
            batch, hashes = [], {}
    library.set_metadata(batch, hashes)
    return done + len(batch)


def _share_copies(
    copies: CopyFinder,
    records: Sequence[ImageRecord],
    embed: Callable[[list[int]], np.ndarray] | None,
    result: IndexResult,
) -> list[ImageRecord]:
    """The batch's records with vectors: byte-identical copies of stored (or just embedded)
    images take that vector, the rest are embedded (`embed(indices)`; None: they have one)."""
    from dataclasses import replace

    found = copies.resolve(records)
    vectors: list[np.ndarray | None] = list(found.vectors)
    todo = found.to_embed()
    if embed is not None and todo:
        for i, vec in zip(todo, embed(todo)):
            vectors[i] = vec
    out = []
    for i, rec in enumerate(records):
        vec = vectors[i]
        if vec is None:
            vec = vectors[found.same_as[i]] if found.same_as[i] is not None else rec.vector
        if found.vectors[i] is not None or found.same_as[i] is not None:
            result.shared += 1
        vectors[i] = vec
        out.append(replace(rec, vector=np.asarray(vec, np.float32), content_hash=found.digests[i]))
    return out


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return 0, 0


__all__ = [
    "ERROR",
    "DecodeStream",
    "IndexResult",
    "Plan",
    "Progress",
    "plan",
    "run",
]
