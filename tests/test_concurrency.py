"""Reading while `imgsearch index` writes, a second writer, and the lock of a killed writer.

The writers are real subprocesses on real photos (tiny random model, batches of 8); the lock is
watched from outside through /proc/locks, so the tests never take it themselves.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from imgsearch import Searcher
from imgsearch.query import Query
from tests.support.harness import (
    copy_photos,
    lock_holder,
    lock_waiters,
    no_runs_left,  # noqa: F401  (an autouse fixture: kills leftover runs)
    read_state,
    real_photos,
    row_count,
    run_cli,
    start,
    summary_counts,
    wait_until,
)

BATCH = 8
pytestmark = pytest.mark.photos


@dataclass
class Answer:
    """One query made while the writer ran: its kind, the probe photo and the hits."""

    kind: str  # vector | text | similar | cli-query | cli-similar
    probe: str | None
    hits: list[tuple[int | None, str, float, int | None, int | None]]  # id, path, score, w, h


def check_hits(answer: Answer) -> None:
    """Scores are cosines in order, every hit carries its metadata."""
    scores = [h[2] for h in answer.hits]
    assert all(math.isfinite(s) and -1.0001 <= s <= 1.0001 for s in scores), answer
    assert scores == sorted(scores, reverse=True), answer
    assert all(h[1] and h[3] and h[4] for h in answer.hits), f"hit without metadata: {answer}"


@pytest.mark.timeout(300)
def test_queries_during_an_index_run_see_consistent_snapshots(run, tiny_model, tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "library"
    initial = copy_photos(real_photos(16), photos)
    run("index", photos, "--library", library, "--model", tiny_model)
    before = read_state(library)
    added = copy_photos(real_photos(32, start=16), photos)
    removed = initial[:2]
    for gone in removed:
        gone.unlink()
    kept = [str(p) for p in initial[2:]]

    # torch keeps the writer busy long enough for hundreds of queries (onnxruntime is faster)
    writer = start(
        ["index", photos, "--library", library, "--batch-size", BATCH, "--runtime", "torch"],
        tmp_path / "l",
    )
    answers: list[Answer] = []
    errors: list[str] = []
    cli_answers: list[Answer] = []

    def batches_started() -> bool:
        return (row_count(library) or 0) > len(initial)

    def cli_queries() -> None:
        """CLI processes one after another: two while the writer starts up, then up to six more
        once it stores batches (each costs a second or two of CPU, as much as the writer's)."""
        for i in range(8):
            if i == 2:
                wait_until(
                    lambda: batches_started() or writer.popen.poll() is not None, timeout=240
                )
            if writer.popen.poll() is not None:
                return
            probe = kept[i % len(kept)]
            if i % 2:
                args = ["similar", probe, "--json", "-k", "100", "--library", library]
            else:
                args = ["query", "a bird in a tree", "--json", "-k", "100", "--library", library]
            done = run_cli(args)
            if done.returncode != 0 or "Traceback" in done.stderr:
                errors.append(f"{args[0]} exit {done.returncode}: {done.stderr}")
                continue
            try:
                found = json.loads(done.stdout)
            except ValueError as exc:
                errors.append(f"{args[0]} printed no JSON ({exc}): {done.stdout!r}")
                continue
            hits = [(None, h["path"], h["score"], h["width"], h["height"]) for h in found]
            kind = "cli-similar" if i % 2 else "cli-query"
            cli_answers.append(Answer(kind, probe if i % 2 else None, hits))

    thread = threading.Thread(target=cli_queries)
    thread.start()
    try:
        with Searcher(library) as searcher:
            i = 0
            while writer.popen.poll() is None:
                probe = kept[i % len(kept)]
                try:
                    if i % 3 == 0:
                        found = searcher.nearest(before.rows[probe].vector, Query(k=200)).hits
                    elif i % 3 == 1:
                        found = searcher.query("a photo of a dog", k=200)
                    else:
                        found = searcher.similar(probe, k=200)
                except Exception as exc:  # every failure is a finding, reported below
                    errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    hits = [(h.id, h.path, h.score, h.width, h.height) for h in found]
                    kind = ("vector", "text", "similar")[i % 3]
                    answers.append(Answer(kind, probe if i % 3 != 1 else None, hits))
                i += 1
                # Gently while the writer loads its model, fast while it stores batches (which
                # takes a fraction of a second).
                time.sleep(0.002 if answers and len(answers[-1].hits) > len(initial) else 0.01)
    finally:
        thread.join(timeout=120)
    assert writer.wait(timeout=60) == 0, writer.stderr
    counts = summary_counts(writer.stderr)
    assert (counts["added"], counts["removed"], counts["unchanged"]) == (32, 2, 14)
    assert errors == []

    after = read_state(library)
    id_of = {p: r.id for p, r in after.rows.items()}
    id_of.update({str(p): before.rows[str(p)].id for p in removed})
    new_in_order = sorted((str(p) for p in added), key=id_of.__getitem__)
    stored_snapshots = {
        frozenset(kept) | frozenset(new_in_order[:n]) | gone
        for n in [*range(0, len(added), BATCH), len(added)]
        for gone in (frozenset(str(p) for p in removed), frozenset())
        if n == len(added) or gone  # the removal comes after the last batch
    }

    seen: dict[int, int] = {}
    for answer in answers + cli_answers:
        check_hits(answer)
        paths = {h[1] for h in answer.hits}
        for row_id, path, *_ in answer.hits:
            assert row_id is None or id_of[path] == row_id, answer
        if answer.kind == "vector":  # the probe's own stored vector: itself first, cosine 1
            assert answer.hits[0][1] == answer.probe, answer
            assert answer.hits[0][2] == pytest.approx(1.0, abs=1e-4), answer
        if answer.kind.endswith("similar"):
            assert answer.probe not in paths, answer
            paths.add(answer.probe)
        assert paths in stored_snapshots, (
            f"{answer.kind} query saw a state the library never had: "
            f"{sorted(Path(p).name for p in paths)}"
        )
        seen[len(paths)] = seen.get(len(paths), 0) + 1
    during = sum(n for size, n in seen.items() if 14 + 2 < size < 14 + 2 + len(added))
    print(
        f"\n{len(answers)} Searcher + {len(cli_answers)} CLI queries while indexing, "
        f"{len(errors)} errors; hits per query size -> count: {dict(sorted(seen.items()))}"
    )
    assert len(answers) >= 200 and len(cli_answers) >= 3
    assert during > 0, "no query ran while batches were being stored"


@pytest.mark.timeout(120)
def test_a_query_racing_a_write_answers_from_one_state(run, tiny_model, tmp_path, monkeypatch):
    """A write committed while a query searches (2 photos gone, 2 new) does not leak into that
    query: it answers from the state it started on or the next one, never from a mixture (which
    returns fewer hits than the library held at any time)."""
    from imgsearch import exactindex, vectors

    photos, library = tmp_path / "photos", tmp_path / "library"
    initial = copy_photos(real_photos(8), photos)
    run("index", photos, "--library", library, "--model", tiny_model)
    before = read_state(library)
    for gone in initial[:2]:
        gone.unlink()
    copy_photos(real_photos(2, start=8), photos)

    writes = []

    def racing(search):
        def search_while_a_run_commits(self, *args, **kwargs):
            if not writes:  # the first search: another run commits its changes right now
                writes.append(summary_counts(run("index", photos, "--library", library).stderr))
            return search(self, *args, **kwargs)

        return search_while_a_run_commits

    # a small library's flat file is searched with numpy (MatrixIndex), a bigger one by FAISS
    for kind in (vectors.VectorIndex, exactindex.MatrixIndex):
        monkeypatch.setattr(kind, "search", racing(kind.search))
    probe = str(initial[2])
    with Searcher(library) as searcher:
        found = searcher.nearest(before.rows[probe].vector, Query(k=8)).hits
    after = read_state(library)
    assert (writes[0]["added"], writes[0]["removed"]) == (2, 2)
    assert {h.path for h in found} in (set(before.rows), set(after.rows)), sorted(
        Path(h.path).name for h in found
    )


@pytest.mark.timeout(300)
def test_second_writer_is_refused_and_wait_waits(run, tiny_model, tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "library"
    copy_photos(real_photos(8), photos)
    run("index", photos, "--library", library, "--model", tiny_model)
    copy_photos(real_photos(16, start=8), photos)
    writer = start(["index", photos, "--library", library, "--batch-size", BATCH], tmp_path / "l")
    assert wait_until(lambda: lock_holder(library) == writer.pid, timeout=120), writer.stderr

    waiter = start(["index", photos, "--library", library, "--wait"], tmp_path / "l")
    second = run_cli(["index", photos, "--library", library])
    assert second.returncode == 1
    assert second.stderr == (
        f"Error: library {library} is being written by imgsearch pid {writer.pid}; "
        f"wait for that run to finish (or use --wait)\n"
    )
    assert second.stdout == ""
    assert wait_until(lambda: waiter.pid in lock_waiters(library), timeout=120), waiter.stderr
    assert lock_holder(library) == writer.pid  # the waiter waits on the lock, it did not fail
    assert writer.wait(timeout=180) == 0, writer.stderr
    assert waiter.wait(timeout=120) == 0, waiter.stderr
    assert summary_counts(writer.stderr)["added"] == 16
    assert summary_counts(waiter.stderr) == dict(
        added=0, updated=0, moved=0, removed=0, skipped=0, unchanged=24
    )


@pytest.mark.timeout(300)
def test_lock_of_a_killed_writer_does_not_block(run, tiny_model, tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "library"
    copy_photos(real_photos(16), photos)
    args = ["index", photos, "--library", library, "--model", tiny_model, "--batch-size", BATCH]
    # torch: a run that lives for seconds (onnxruntime indexes these 16 in ~1 s, before the kill)
    writer = start([*args, "--runtime", "torch"], tmp_path / "l")
    assert wait_until(lambda: row_count(library) is not None, timeout=120), writer.stderr
    time.sleep(random.uniform(0, 2))
    assert wait_until(lambda: lock_holder(library) == writer.pid, timeout=120), writer.stderr
    children = psutil.Process(writer.pid).children(recursive=True)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    try:
        # The dead run's mark is still in the lock file; the next run starts at once, no --wait.
        assert f"imgsearch pid {writer.pid}" in (library / "write.lock").read_text()
        kept = row_count(library) or 0
        counts = summary_counts(run(*args).stderr)
        assert counts["added"] == 16 - kept
        assert lock_holder(library) is None
        assert (library / "write.lock").read_text() == f"imgsearch pid {os.getpid()}"
    finally:
        for child in children:  # decode workers the killed run may have left (see crash tests)
            if child.is_running():
                child.kill()


@pytest.mark.timeout(300)
def test_two_libraries_indexed_at_once_both_get_their_text_encoder(tiny_model, tmp_path):
    """Two runs into two libraries with the same model, on a machine that has not exported that
    model's text encoder yet: both export into the shared XDG cache at once, and both libraries
    end with a complete text encoder (the torch-free query path), without a warning."""
    photos, cache = tmp_path / "photos", tmp_path / "cold-cache"
    copy_photos(real_photos(8), photos)
    libraries = [tmp_path / "lib-a", tmp_path / "lib-b"]
    procs = [
        start(
            ["index", photos, "--library", lib, "--model", tiny_model],
            tmp_path / "l",
            XDG_CACHE_HOME=str(cache),
        )
        for lib in libraries
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr
        assert "could not export" not in proc.stderr, proc.stderr
    for lib in libraries:
        assert (lib / "text-encoder" / "manifest.json").is_file(), sorted(lib.rglob("*"))
