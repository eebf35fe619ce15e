"""Run `imgsearch` as real processes, watch a library from outside, kill runs and mount disks.

Shared by the crash-safety, concurrency and resource-error tests. The library is read here with
plain `sqlite3` (not imgsearch's own code), so these checks are an independent witness of what a
killed or concurrent run left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.support.photos import SHARED_PHOTOS

IMAGENET = SHARED_PHOTOS / "imagenet-500"
SUMMARY_RE = re.compile(
    r"(\d+) added, (\d+) updated, (\d+) moved, (\d+) removed, (\d+) skipped, (\d+) unchanged"
)


# ---- photos -----------------------------------------------------------------------------------
def real_photos(n: int, *, start: int = 0) -> list[Path]:
    """`n` JPEGs of ../shared/photos/imagenet-500 in a fixed order, or skip the test."""
    if not IMAGENET.is_dir():
        pytest.skip(f"real photos not found at {IMAGENET} (../shared/photos beside the repo)")
    files = sorted(IMAGENET.glob("*.JPEG"))[start : start + n]
    if len(files) < n:
        pytest.skip(f"{IMAGENET} holds {len(files) + start} JPEGs, the test needs {start + n}")
    return files


def copy_photos(files: Sequence[Path], dest: Path) -> list[Path]:
    """Copy photos into `dest` (the tests add, delete and index them freely)."""
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, dest / f.name)) for f in files]


# ---- processes --------------------------------------------------------------------------------
def cli_argv(*args: object) -> list[str]:
    """The `imgsearch` command line, run by this interpreter."""
    return [sys.executable, "-m", "imgsearch.cli", *(str(a) for a in args)]


@dataclass
class Proc:
    """A started `imgsearch` process, its output kept in files (pipes could fill and block it)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


_started: list[Proc] = []


def start(args: Sequence[object], logs: Path, **env: str) -> Proc:
    """Start `imgsearch ARGS` with this process's environment (the test's isolated settings)
    and the given variables."""
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"{time.monotonic_ns()}"
    out, err = logs / f"{stem}.out", logs / f"{stem}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        popen = subprocess.Popen(cli_argv(*args), stdout=fo, stderr=fe, env={**os.environ, **env})
    proc = Proc(popen, out, err, time.monotonic())
    _started.append(proc)
    return proc


def stop_all() -> None:
    """Kill what `start` started and is still running (a failed test must not leave runs)."""
    while _started:
        proc = _started.pop()
        if proc.popen.poll() is None:
            kill_hard(proc, grace=0)


def run_cli(args: Sequence[object], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `imgsearch ARGS` to the end in a subprocess."""
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout)


def kill_hard(proc: Proc, *, grace: float = 10.0) -> list[str]:
    """SIGKILL the run's main process only (as the OOM killer or `kill -9` would); return its
    child processes still alive `grace` seconds later, as "pid command" (they are killed then)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.popen.poll() is None:  # not reaped yet, so the pid is still this process's
        os.kill(proc.pid, signal.SIGKILL)
    proc.popen.wait(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=grace)
    left = []
    for child in alive:
        with suppress(psutil.NoSuchProcess):
            left.append(f"{child.pid} {' '.join(child.cmdline())[:90]}")
            child.kill()
    return left


def wait_until(predicate: Callable[[], object], *, timeout: float, every: float = 0.02) -> bool:
    """Poll `predicate` until it is truthy (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def next_second() -> None:
    """Sleep into the next wall-clock second, so that a new `indexed_at` stamp would differ."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)


# ---- the write lock, seen from outside -----------------------------------------------------------
def _lock_entries(library: Path) -> list[tuple[bool, int]]:
    """(is_waiter, pid) for each flock on `library/write.lock` in /proc/locks."""
    try:
        st = os.stat(library / "write.lock")
    except FileNotFoundError:
        return []
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    entries = []
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        waiter = len(parts) > 1 and parts[1] == "->"
        fields = parts[2:] if waiter else parts[1:]
        if len(fields) >= 5 and fields[0] == "FLOCK" and fields[4] == key:
            entries.append((waiter, int(fields[3])))
    return entries


def lock_holder(library: Path) -> int | None:
    """The pid holding the library's write lock, or None (read without touching the lock)."""
    held = [pid for waiter, pid in _lock_entries(library) if not waiter]
    return held[0] if held else None


def lock_waiters(library: Path) -> list[int]:
    """Pids blocked waiting for the library's write lock."""
    return [pid for waiter, pid in _lock_entries(library) if waiter]


# ---- the library, seen from outside ------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    id: int
    indexed_at: str
    vector: np.ndarray


@dataclass(frozen=True)
class LibraryState:
    """What a library folder holds, read with plain sqlite3."""

    rows: dict[str, Row]  # path -> row, status ok only
    meta: dict[str, str]
    runs: list[tuple[str, int | None]]  # (status, added) per recorded run
    files: list[str]  # names in the folder and in text-encoder/, for leftovers

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation", "0"))

    @property
    def faiss_fresh(self) -> bool:
        """The metadata names a FAISS file for the current generation and it exists."""
        name = self.meta.get("faiss_file")
        return (
            bool(name)
            and self.meta.get("faiss_generation") == str(self.generation)
            and name in self.files
        )

    @property
    def temp_files(self) -> list[str]:
        """Leftovers of an interrupted writer: FAISS temp files, unfinished text encoders."""
        return [
            f
            for f in self.files
            if (f.startswith((".vectors-", ".text-encoder.")) and f.endswith(".tmp"))
            or f.startswith("text-encoder/.export-")
            or f.endswith("manifest.json.tmp")
        ]


@contextmanager
def connect(library: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to an existing library (never creates one)."""
    conn = sqlite3.connect(f"file:{library / 'library.db'}?mode=rw", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def read_state(library: Path) -> LibraryState | None:
    """The library's rows, metadata and files, in one read transaction; None if there is none
    yet (no database file, or the schema is not created yet)."""
    if not (library / "library.db").is_file():
        return None
    with connect(library) as conn:
        conn.execute("BEGIN")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"images", "meta", "runs"} <= tables:
            return None
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        dtype = np.float16 if meta.get("vector_format") == "float16" else np.float32
        rows = {
            os.fsdecode(path): Row(row_id, stamp, np.frombuffer(blob, dtype=dtype).astype("f4"))
            for row_id, path, stamp, blob in conn.execute(
                "SELECT images.id, path, indexed_at, vectors.vector FROM images "
                "LEFT JOIN vectors USING (id) WHERE status = 'ok'"
            )
        }
        runs = list(conn.execute("SELECT status, added FROM runs ORDER BY id"))
        conn.execute("COMMIT")
    files = sorted(
        [p.name for p in library.iterdir()]
        + [f"text-encoder/{p.name}" for p in (library / "text-encoder").glob("*")]
    )
    return LibraryState(rows, meta, runs, files)


def row_count(library: Path) -> int | None:
    """Rows stored so far (cheap, for polling a live run); None while there is no schema."""
    try:
        with connect(library) as conn:
            return conn.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return None


def integrity(library: Path) -> str:
    with connect(library) as conn:
        return "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))


def faiss_contents(path: Path) -> dict[int, np.ndarray]:
    """id -> vector of a FAISS file (IndexIDMap2 over a flat or HNSW index)."""
    import faiss

    index = faiss.read_index(str(path))
    ids = faiss.vector_to_array(index.id_map)
    return {int(i): index.reconstruct(int(i)) for i in ids}


def assert_index_matches(contents: dict[int, np.ndarray], state: LibraryState) -> None:
    """The FAISS ids are exactly the SQLite row ids and hold the same vectors."""
    by_id = {row.id: row.vector for row in state.rows.values()}
    assert sorted(contents) == sorted(by_id), "FAISS ids differ from the SQLite rows"
    for row_id, vector in by_id.items():
        np.testing.assert_allclose(contents[row_id], vector, atol=1e-6)


def vector_index_contents(library: Path) -> dict[int, np.ndarray]:
    """id -> vector of the index a query would search right now (Library.vector_index)."""
    import faiss

    from imgsearch.library import Library
    from imgsearch.vectors import IndexParams

    with Library.open(library) as lib:
        vindex = lib.ann.current(IndexParams())
        ids = faiss.vector_to_array(vindex.index.id_map)
        return {int(i): vindex.index.reconstruct(int(i)) for i in ids}


def summary_counts(stderr: str) -> dict[str, int]:
    """The counts of `imgsearch index`'s summary line."""
    found = SUMMARY_RE.search(stderr)
    assert found, f"no summary line in: {stderr!r}"
    keys = ("added", "updated", "moved", "removed", "skipped", "unchanged")
    return dict(zip(keys, map(int, found.groups())))


# ---- disks ------------------------------------------------------------------------------------
@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of `size` mounted at `where` (needs root), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("cannot mount a tmpfs: no `mount` command")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def remount(where: Path, mode: str) -> None:
    """Remount a tmpfs read-only ("ro") or read-write ("rw")."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def fill_disk(folder: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 16)
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError:
            pass
        # The last partial block: single bytes until not even one fits.
        with suppress(OSError):
            while True:
                fh.write(b"\0")
    return filler


@pytest.fixture(autouse=True)
def no_runs_left() -> Iterator[None]:
    """Whatever happens in a test, no `imgsearch` it started outlives it (autouse where
    imported)."""
    yield
    stop_all()


# ---- in-process runs for module-scoped fixtures --------------------------------------------------
@contextmanager
def isolated_settings(home: Path, cache: Path, library: Path | None = None) -> Iterator[None]:
    """No user config, IMGSEARCH_* variables or XDG dirs of the user's: config and data dirs
    under `home`, caches in `cache`, one decode worker (conftest's `isolated_env` per test)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("IMGSEARCH_"):
                mp.delenv(key)
        mp.setenv("XDG_CONFIG_HOME", str(home / "xdg-config"))
        mp.setenv("XDG_DATA_HOME", str(home / "xdg-data"))
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.setenv("IMGSEARCH_WORKERS", "1")
        if library is not None:
            mp.setenv("IMGSEARCH_LIBRARY", str(library))
        yield


def index_in_process(*args: object) -> str:
    """`imgsearch index ARGS` in this process; asserts success and returns its stderr."""
    from click.testing import CliRunner

    from imgsearch.cli import cli

    result = CliRunner().invoke(cli, ["index", *(str(a) for a in args)])
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result.stderr
