"""Crash safety: `imgsearch index` killed by SIGKILL at any moment keeps every batch it stored,
leaves a library that opens, passes `PRAGMA integrity_check` and agrees with its FAISS index, and
a re-run finishes the job without embedding the stored photos again.

The killed runs are real subprocesses on real photos (tiny random model, batches of 8). The
default run kills three runs at moments picked by watching the library (after the first batch,
after the last batch, during the text encoder export); `-m slow` kills 40 runs at times spread
uniformly over the measured duration of an uninterrupted run (half of them over the part that
follows the first stored batch) and prints what each one left (use `-s` to see the table).
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest

from imgsearch.library import Library
from tests.support.harness import (
    LibraryState,
    Proc,
    assert_index_matches,
    copy_photos,
    faiss_contents,
    integrity,
    kill_hard,
    next_second,
    no_runs_left,  # noqa: F401  (an autouse fixture: kills leftover runs)
    read_state,
    real_photos,
    row_count,
    start,
    summary_counts,
    vector_index_contents,
    wait_until,
)

BATCH = 8

pytestmark = pytest.mark.photos


@dataclass
class Outcome:
    """What one killed run left behind and what its re-run did."""

    trial: int
    kill_at: float | None  # seconds after start; None: the run ended before the kill
    when: str  # the phase of the reference run at that time, or the trigger
    phase: str  # the phase the library shows
    kept: int  # rows stored before the re-run
    faiss: str  # fresh | stale | none
    added: int = 0  # by the re-run
    reembedded: int = 0  # stored rows the re-run embedded again
    leftovers: list[str] = field(default_factory=list)  # temp files in the library
    orphans: list[str] = field(default_factory=list)  # processes that outlived the run
    failure: str = ""  # the first failed check, if any


def index_args(photos: Path, library: Path, model: str) -> list[object]:
    return ["index", photos, "--library", library, "--model", model, "--batch-size", BATCH]


def phase_shown(state: LibraryState | None, total: int) -> str:
    """How far the killed run got, judged only by what its library holds."""
    if state is None:
        return "start-up"
    if "model" not in state.meta:
        return "walk / model load"
    stored = len(state.rows)
    if stored == 0:
        return "first batch"
    if stored < total:
        return "batches"
    if not state.faiss_fresh:
        return "FAISS file"
    if not any(status == "ok" for status, _ in state.runs):
        return "text export / run record"
    return "finished"


def check_after_kill(library: Path, total: int, outcome: Outcome) -> None:
    """What a user relies on right after a crash: the library opens and checks out, and the
    index a query searches holds exactly the stored vectors (the FAISS file when it is fresh)."""
    state = read_state(library)
    outcome.phase = phase_shown(state, total)
    outcome.kept = len(state.rows) if state else 0
    outcome.leftovers = state.temp_files if state else []
    outcome.faiss = "none"
    if state is not None and state.meta.get("faiss_file"):
        outcome.faiss = "fresh" if state.faiss_fresh else "stale"
    if (library / "library.db").is_file():
        with Library.open(library):
            pass
        assert integrity(library) == "ok"
        state = read_state(library)  # opening creates the schema if the run died before it
    if state is not None:
        if state.faiss_fresh:
            assert_index_matches(faiss_contents(library / state.meta["faiss_file"]), state)
        assert_index_matches(vector_index_contents(library), state)


def text_encoder_files(state: LibraryState) -> list[str]:
    """The exported ONNX text encoder (queries without torch), manifest written last."""
    return [f for f in state.files if f.startswith("text-encoder/")]


def rerun_and_compare(
    run, photos: Path, library: Path, model: str, reference: LibraryState, outcome: Outcome
) -> None:
    """Re-run `index`: it embeds only what is missing, keeps the stored rows as they were, and
    ends with the library an uninterrupted run builds."""
    before = read_state(library)
    kept = before.rows if before else {}
    total = len(reference.rows)
    next_second()  # a row embedded again would get a new `indexed_at`
    counts = summary_counts(run(*index_args(photos, library, model)).stderr)
    outcome.added = counts["added"]
    outcome.reembedded = counts["added"] + counts["updated"] - (total - len(kept))
    assert counts == dict(
        added=total - len(kept),
        updated=0,
        moved=0,
        removed=0,
        skipped=0,
        unchanged=len(kept),
    )
    after = read_state(library)
    assert after is not None
    for path, row in kept.items():
        assert after.rows[path].id == row.id
        assert after.rows[path].indexed_at == row.indexed_at
        np.testing.assert_array_equal(after.rows[path].vector, row.vector)
    assert sorted(after.rows) == sorted(reference.rows)
    for path, row in after.rows.items():
        np.testing.assert_allclose(row.vector, reference.rows[path].vector, atol=1e-5)
    assert after.faiss_fresh
    assert_index_matches(faiss_contents(library / after.meta["faiss_file"]), after)
    assert after.temp_files == []
    assert text_encoder_files(after) == text_encoder_files(reference)
    assert after.runs[-1][0] == "ok"
    assert integrity(library) == "ok"


def kill_when(
    proc: Proc, ready: Callable[[], object], jitter: float
) -> tuple[float | None, list[str]]:
    """SIGKILL `proc` a random moment (up to `jitter` s) after `ready()` turns true."""
    reached = wait_until(lambda: ready() or proc.popen.poll() is not None, timeout=240)
    assert reached, "the run neither reached the moment nor ended within 240 s"
    time.sleep(random.uniform(0, jitter))
    if proc.popen.poll() is not None:
        return None, []
    at = time.monotonic() - proc.started
    return at, kill_hard(proc, grace=2)


def stored(library: Path, rows: int) -> Callable[[], bool]:
    return lambda: (row_count(library) or 0) >= rows


def exporting(cache: Path) -> Callable[[], bool]:
    """A text encoder export into the XDG cache `cache` has begun (its temporary folder exists)."""
    return lambda: any(cache.glob("imgsearch/text-encoders/*/.export-*"))


@pytest.mark.timeout(300)
def test_runs_killed_mid_batches_and_after_them_lose_nothing(run, tiny_model, tmp_path):
    photos = tmp_path / "photos"
    total = 96  # decoding and embedding are fast: many batches keep the batch phase long enough
    copy_photos(real_photos(total), photos)
    libraries = [tmp_path / f"lib-{i}" for i in range(3)]
    cold_cache = tmp_path / "cold-cache"  # the last run exports its text encoder, not links it
    triggers = {
        "after the first batch": (stored(libraries[0], BATCH), 0.0),  # kill at once: later
        # batches are then in flight even when a loaded machine makes the run finish quickly
        "after the last batch": (stored(libraries[1], total), 0.1),
        "during the text export": (exporting(cold_cache), 0.2),
    }
    procs = [
        start(index_args(photos, lib, tiny_model), tmp_path / "logs", **env)
        for lib, env in zip(libraries, [{}, {}, {"XDG_CACHE_HOME": str(cold_cache)}])
    ]
    with ThreadPoolExecutor(len(procs)) as pool:
        kills = [
            pool.submit(kill_when, proc, *trigger)
            for proc, trigger in zip(procs, triggers.values())
        ]
        # The reference (uninterrupted) library is built while the killed runs start up.
        reference_lib = tmp_path / "reference"
        counts = summary_counts(run(*index_args(photos, reference_lib, tiny_model)).stderr)
        assert counts["added"] == total and counts["skipped"] == 0
        reference = read_state(reference_lib)
        results = [fut.result() for fut in kills]

    outcomes = [
        Outcome(trial, kill_at, name, "", 0, "", orphans=orphans)
        for trial, (name, (kill_at, orphans)) in enumerate(zip(triggers, results))
    ]
    for outcome, library in zip(outcomes, libraries):
        check_after_kill(library, total, outcome)
    print_table(outcomes, total)  # before the re-runs' checks, so that a failure shows it
    for outcome, library in zip(outcomes, libraries):
        rerun_and_compare(run, photos, library, tiny_model, reference, outcome)
    # The first trigger fires right after a commit: the run must have died with batches stored.
    assert any(0 < o.kept < total for o in outcomes), outcomes


@pytest.mark.timeout(120)
def test_a_killed_run_leaves_no_processes_behind(tiny_model, tmp_path):
    """Decode workers (and the forkserver and resource tracker they keep alive) end with the run
    that started them, even when it dies by SIGKILL or the OOM killer: crashes pile up nothing."""
    photos, library = tmp_path / "photos", tmp_path / "library"
    copy_photos(real_photos(96), photos)
    proc = start(index_args(photos, library, tiny_model), tmp_path / "logs")
    # Kill as soon as a decode worker (a grandchild, under the forkserver) exists: a run can die
    # at any moment, its workers' start-up included.
    assert wait_until(decode_worker_alive(proc), timeout=120, every=0.002), proc.stderr
    assert kill_hard(proc, grace=10) == []


def decode_worker_alive(proc: Proc) -> Callable[[], bool]:
    def alive() -> bool:
        try:
            return any(c.ppid() != proc.pid for c in psutil.Process(proc.pid).children(True))
        except psutil.NoSuchProcess:
            return False

    return alive


# ---- the full version -----------------------------------------------------------------------
@dataclass
class Timeline:
    """When an uninterrupted run reached each phase (seconds after its start)."""

    first_row: float
    all_rows: float
    faiss: float
    recorded: float
    end: float

    def phase_at(self, t: float) -> str:
        if t < self.first_row:
            return "start-up/walk/model"
        if t < self.all_rows:
            return "batches"
        if t < self.faiss:
            return "FAISS file"
        if t < self.recorded:
            return "text export/record"
        return "exit"


def watch(proc: Proc, library: Path, total: int) -> Timeline:
    """Follow an uninterrupted run to its end, noting when the library shows each phase."""
    seen: dict[str, float] = {}
    while True:
        now = time.monotonic() - proc.started
        ended = proc.popen.poll() is not None
        state = read_state(library)
        if state is not None:
            if state.rows:
                seen.setdefault("first_row", now)
            if len(state.rows) == total:
                seen.setdefault("all_rows", now)
            if len(state.rows) == total and state.faiss_fresh:
                seen.setdefault("faiss", now)
            if any(status == "ok" for status, _ in state.runs):
                seen.setdefault("recorded", now)
        if ended:
            break
        time.sleep(0.05)
    end = time.monotonic() - proc.started
    return Timeline(
        *(seen.get(k, end) for k in ("first_row", "all_rows", "faiss", "recorded")), end
    )


def print_table(outcomes: list[Outcome], total: int) -> None:
    print(f"\n{'trial':>5} {'kill s':>7} {'when':<34} {'library shows':<26} {'kept':>5} ", end="")
    print(f"{'faiss':<6} {'re-run added':>12} {'re-embedded':>11} {'orphans':>7}  ", end="")
    print("leftovers / failed check")
    for o in outcomes:
        at = f"{o.kill_at:.2f}" if o.kill_at is not None else "ended"
        print(
            f"{o.trial:>5} {at:>7} {o.when:<34} {o.phase:<26} {o.kept:>5} {o.faiss:<6} "
            f"{o.added:>12} {o.reembedded:>11} {len(o.orphans):>7}  "
            f"{', '.join(o.leftovers) or '-'} {o.failure}"
        )
    phases: dict[str, int] = {}
    for o in outcomes:
        phases[o.phase] = phases.get(o.phase, 0) + 1
    print(f"{len(outcomes)} kills of runs indexing {total} photos; library showed: {phases}")
    print(
        f"rows kept in all: {sum(o.kept for o in outcomes)}, re-embedded: "
        f"{sum(o.reembedded for o in outcomes)}, orphaned processes: "
        f"{sum(len(o.orphans) for o in outcomes)}"
    )


def stored_or_ended(proc: Proc, library: Path) -> Callable[[], bool]:
    """The run has stored its first batch, or has ended."""
    return lambda: bool(row_count(library)) or proc.popen.poll() is not None


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_at_random_moments_of_the_run(run, tiny_model, tmp_path):
    trials, total = 40, 96
    photos = tmp_path / "photos"
    copy_photos(real_photos(total), photos)
    reference_lib = tmp_path / "reference"
    run(*index_args(photos, reference_lib, tiny_model))  # also puts the text encoder in the cache
    reference = read_state(reference_lib)
    timed_lib = tmp_path / "timed"
    proc = start(index_args(photos, timed_lib, tiny_model), tmp_path / "logs")
    timeline = watch(proc, timed_lib, total)
    assert proc.wait(timeout=30) == 0, proc.stderr
    assert summary_counts(proc.stderr)["added"] == total
    print(f"\nuninterrupted run: {timeline}")

    # Half the kills at times uniform over the whole run. The other half at times uniform over
    # the reference run's span from its first stored batch to its recorded end, counted from the
    # moment the killed run stores its first batch and scaled by how fast that run got there:
    # the CPU load of the machine changes run times, and start-up is most of a run.
    rng = random.Random()
    half = trials // 2
    moments = [("whole run", (i + rng.random()) / half * timeline.end) for i in range(half)]
    span = timeline.recorded - timeline.first_row
    moments += [("after batch 1", (i + rng.random()) / half * span) for i in range(half)]
    rng.shuffle(moments)
    outcomes = []
    for trial, (mode, at) in enumerate(moments):
        library = tmp_path / f"lib-{trial}"
        proc = start(index_args(photos, library, tiny_model), tmp_path / "logs")
        if mode == "whole run":
            time.sleep(max(0.0, at - (time.monotonic() - proc.started)))
            when = f"{mode}: {timeline.phase_at(at)}"
        else:
            wait_until(stored_or_ended(proc, library), timeout=240)
            pace = (time.monotonic() - proc.started) / timeline.first_row
            time.sleep(at * min(2.0, max(0.5, pace)))
            when = f"{mode}: {timeline.phase_at(timeline.first_row + at)}"
        ended = proc.popen.poll() is not None
        kill_at = None if ended else time.monotonic() - proc.started
        orphans = [] if ended else kill_hard(proc, grace=2)
        outcome = Outcome(trial, kill_at, when, "", 0, "", orphans=orphans)
        try:
            check_after_kill(library, total, outcome)
            rerun_and_compare(run, photos, library, tiny_model, reference, outcome)
        except AssertionError as exc:  # every trial runs; the failures are listed at the end
            outcome.failure = f"FAILED: {str(exc).splitlines()[0][:100]}"
        outcomes.append(outcome)
        shutil.rmtree(library)
    print_table(outcomes, total)
    assert [o.failure for o in outcomes if o.failure] == []
