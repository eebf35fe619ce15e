"""Indexing throughput: the model alone, decoding alone, and the real `imgsearch index` command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder
    from imgsearch.modelspec import PreprocessSpec

MODEL = "ViT-B-32"
WEIGHTS = "none"  # fixed seeded random weights: the cost of the real ones, no download


def encode_rate(encoder: Encoder, batch_size: int, *, seconds: float = 20.0) -> float:
    """Images/s of Encoder.embed_pixels on ready uint8 batches (the model ceiling), warmed up."""
    h, w = encoder.spec.preprocess.size
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8)
    encoder.embed_pixels(batch)  # warm-up: allocations, kernel selection
    done, t0 = 0, time.perf_counter()
    while True:
        encoder.embed_pixels(batch)
        done += batch_size
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and done >= 3 * batch_size:
            return done / elapsed


def decode_rate(
    paths: list[Path], spec: PreprocessSpec, settings: Settings, device_decoder: Any = None
) -> tuple[float, int]:
    """(images/s, failures) of indexer.pipeline.DecodeStream with the indexer's worker setup.

    With `device_decoder` (indexer.pipeline.device_decoder's GPU JPEG decoder, which the
    indexer uses when the model runs on CUDA), JPEGs go through it in batches as in indexing.
    """
    from imgsearch.decode import DecodeFailed
    from indexer.pipeline import DecodeStream

    workers = settings.workers or (os.cpu_count() or 1)  # as indexer.pipeline._embed_all
    failed = 0
    payloads: list[Any] = []

    def flush() -> int:
        _, records = device_decoder(payloads)
        payloads.clear()
        return sum(isinstance(r, DecodeFailed) for r in records)

    t0 = time.perf_counter()
    stream = DecodeStream(
        [str(p) for p in paths],
        spec,
        workers=workers,
        max_pixels=settings.max_pixels,
        lookahead=3 * settings.batch_size,
        for_device=device_decoder is not None,
    )
    for item in stream:
        if isinstance(item, DecodeFailed):
            failed += 1
        elif device_decoder is not None and not hasattr(item, "pixels"):  # a JpegPayload
            payloads.append(item)
            if len(payloads) >= settings.batch_size:
                failed += flush()
    if payloads:
        failed += flush()
    if device_decoder is not None:
        import torch

        torch.cuda.synchronize()
    return len(paths) / (time.perf_counter() - t0), failed


def efficiency(index_img_s: float, encode_img_s: float, decode_img_s: float, device: str) -> float:
    """Indexing rate / the best a pipeline of these two stages can do on this device.

    CPU: both stages share the cores, so the bound is 1 / (1/encode + 1/decode); a GPU encodes
    while the CPU decodes, so the bound is the slower stage.
    """
    if device.startswith(("cuda", "mps")):
        return index_img_s / min(encode_img_s, decode_img_s)
    return index_img_s * (1.0 / encode_img_s + 1.0 / decode_img_s)


def imgsearch_command() -> list[str]:
    """The installed console script, else the module (same entry point)."""
    script = shutil.which("imgsearch", path=os.path.dirname(sys.executable)) or shutil.which(
        "imgsearch"
    )
    return [script] if script else [sys.executable, "-m", "imgsearch.cli"]


@dataclass(frozen=True)
class CommandRun:
    """One CLI process: wall time, peak RSS (whole process tree, and the main process), output."""

    wall_s: float
    peak_rss_mb: float
    peak_rss_main_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_command(args: list[str], *, poll_s: float = 0.05, timeout: float = 7200) -> CommandRun:
    """Run a command, sampling the RSS of it and all its descendants (decode workers) meanwhile.

    The wall time is taken when the process exits (the main thread waits on it), not at the
    next RSS sample: a 0.3 s command must not read up to `poll_s` long. The tree figure sums
    RSS, so pages shared between processes (the forkserver's imports) count once per process:
    an upper bound on what the run needs.
    """
    import threading

    import psutil

    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"imgsearch-bench-{os.getpid()}"
    peaks = [0, 0]
    with open(f"{out_path}.out", "w+") as out, open(f"{out_path}.err", "w+") as err:
        t0 = time.perf_counter()
        proc = psutil.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    family = [proc, *proc.children(recursive=True)]
                    rss = [p.memory_info().rss for p in family]
                except psutil.Error:  # a worker ended between listing and reading
                    rss = []
                if rss:
                    peaks[0], peaks[1] = max(peaks[0], sum(rss)), max(peaks[1], rss[0])
                done.wait(poll_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    return CommandRun(wall, peaks[0] / 2**20, peaks[1] / 2**20, proc.returncode, stdout, stderr)


@dataclass(frozen=True)
class IndexRun:
    """One `imgsearch index` run into a library, with what its summary line reported."""

    run: CommandRun
    counts: dict[str, int]
    reported_s: float | None  # the run's own "done in X s" (pipeline.run: walk to last write)

    @property
    def wall_s(self) -> float:
        return self.run.wall_s


_COUNT = re.compile(r"(\d+) (added|updated|moved|removed|skipped|unchanged)")
_DONE = re.compile(r"done in ([0-9.]+) s")


def index(folder: Path, library: Path, *, extra: tuple[str, ...] = ()) -> IndexRun:
    """`imgsearch index FOLDER --library LIB --pretrained none`, timed from start to exit."""
    args = [*imgsearch_command(), "index", str(folder), "--library", str(library)]
    args += ["--model", MODEL, "--pretrained", WEIGHTS, *extra]
    run = run_command(args)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    counts = {kind: int(n) for n, kind in _COUNT.findall(run.stderr)}
    done = _DONE.search(run.stderr)
    return IndexRun(run, counts, float(done.group(1)) if done else None)
