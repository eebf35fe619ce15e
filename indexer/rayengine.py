"""`imgsearch index --engine ray`: the embed stage of indexer.pipeline on a Ray cluster.

Planning (new, changed, moved, deleted), moves, deletions, metadata backfill and the ANN index
stay on the driver, in indexer.pipeline.run. Only the files to embed go to Ray Data: one row
per work unit (indexer.shards), `map_batches` over an actor pool whose actors hold the image
encoder, decode with imgsearch.decode.decode (the local pixels exactly) and write one Parquet
shard per unit. The driver is the one writer: it imports each shard as it arrives, through
the same Library.store, copy sharing and tags/albums update as a local run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsearch.errors import ImgsearchError
from indexer import shards
from indexer.shardimport import ShardWriter
from indexer.shardimport import embedder as embedder_for

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder

log = logging.getLogger(__name__)
INSTALL_HINT = 'the ray engine needs Ray Data: pip install "imgsearch[ray]"  (ray[data], pyarrow)'


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray. `actors` 0: one per GPU of the cluster, else one per
    `cpus_per_actor` CPUs. `crash_once`: a marker file; the first actor to write a shard
    while it is absent creates it and kills its own process (the worker-loss test)."""

    address: str | None = None
    actors: int = 0
    cpus_per_actor: int = 1
    shard_size: int = 256
    shard_dir: Path | None = None
    crash_once: str | None = None


def import_ray() -> Any:
    """The ray module, or an ImgsearchError saying how to install it."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImgsearchError(f"{INSTALL_HINT} ({exc})") from exc
    return ray


class EmbedActor:
    """A Ray Data actor: loads the image encoder once, then unit -> decode -> embed -> shard."""

    def __init__(
        self,
        name: str,
        weights: str,
        settings: Settings,
        run_key: str,
        folder: str,
        threads: int,
        crash_once: str | None,
    ) -> None:
        from imgsearch import runtime
        from imgsearch.modelspec import ModelSpec

        encoder: Any = runtime.load_image_encoder(name, weights, settings)
        if encoder.device == "cpu" and threads:
            encoder = _with_threads(encoder, threads)
        expected = ModelSpec.from_json(json.dumps(json.loads(run_key)["spec"]))
        if encoder.spec != expected:
            raise ImgsearchError(
                f"the Ray worker on {os.uname().nodename} loaded {encoder.spec.label()} with "
                f"another geometry than the driver's {expected.label()}: install the same "
                f"model files on every node"
            )
        self.encoder = encoder
        self.settings = settings
        self.run_key = run_key
        self.folder = Path(folder)
        self.crash_once = crash_once

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys, images, failed = [], [], []
        for key, paths in zip(batch["key"], batch["paths"]):
            unit = shards.Unit(str(key), tuple(json.loads(str(paths))))
            rows = self.embed_unit(unit)
            shards.write(
                shards.shard_path(self.folder, unit), rows, self.encoder.spec.dim,
                unit=unit.key, model=self.run_key,
            )  # fmt: skip
            self._maybe_crash()
            keys.append(unit.key)
            images.append(sum(r.vector is not None for r in rows))
            failed.append(sum(r.vector is None for r in rows))
        return {"key": np.array(keys), "images": np.array(images), "failed": np.array(failed)}

    def embed_unit(self, unit: shards.Unit) -> list[shards.ShardRow]:
        """Decode exactly as the local run does, embed in `batch_size` model calls."""
        from imgsearch.decode import Decoded, decode

        pre = self.encoder.spec.preprocess
        items = [decode(p, pre, max_pixels=self.settings.max_pixels) for p in unit.paths]
        good = [i for i, item in enumerate(items) if isinstance(item, Decoded)]
        vectors: dict[int, np.ndarray] = {}
        step = self.settings.batch_size
        for start in range(0, len(good), step):
            idx = good[start : start + step]
            out = self.encoder.embed_pixels(np.stack([items[i].pixels for i in idx]))
            vectors.update(zip(idx, np.asarray(out, np.float32)))
        return [shards.row_of(item, vectors.get(i)) for i, item in enumerate(items)]

    def _maybe_crash(self) -> None:
        if not self.crash_once:
            return
        try:
            fd = os.open(self.crash_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # the shard is written, the task not returned


def _with_threads(encoder: Any, threads: int) -> Any:
    """The encoder using the actor's CPU share, not every core of the node."""
    from imgsearch import imageonnx

    if isinstance(encoder, imageonnx.OnnxImageEncoder):
        return imageonnx.OnnxImageEncoder(encoder.export_dir, threads=threads)
    import torch

    torch.set_num_threads(threads)
    return encoder


def connect(ray: Any, options: RayOptions) -> bool:
    """Join the cluster at `address` (or the running one); none: start a local one. Returns
    whether this run started Ray (and so shuts it down)."""
    quiet = not log.isEnabledFor(logging.DEBUG)  # Ray's own progress lines only with -v
    if quiet:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.CRITICAL)  # errors come back as ours
    if ray.is_initialized():
        return False
    check_reachable(options.address)
    try:
        ray.init(
            address=options.address, log_to_driver=not quiet, include_dashboard=False,
            configure_logging=not quiet,
            logging_level=logging.WARNING if quiet else logging.INFO,
        )  # fmt: skip
    except ConnectionError as exc:
        raise ImgsearchError(
            f"cannot reach the Ray cluster at {options.address}: {exc} (start it with "
            f"`ray start --head`, or give --address HOST:6379)"
        ) from exc
    return True


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) nobody answers: Ray itself retries for
    minutes. `auto`, `local` and no address are left to Ray."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ImgsearchError(
            f"--address {address}: expected HOST:PORT, e.g. 10.0.0.1:6379 (the head node's GCS "
            f"port that `ray start --head` prints) or ray://HOST:10001"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ImgsearchError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (start it with "
            f"`ray start --head` on that machine, or check --address and the firewall)"
        ) from exc


def pool_shape(resources: dict[str, float], options: RayOptions) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor) for a cluster's resources. More actors than
    the cluster has CPUs for share them (fractional CPUs), so that they all start."""
    gpus = float(resources.get("GPU", 0))
    total = float(resources.get("CPU", 1))
    cpus = float(max(1, options.cpus_per_actor))
    if gpus >= 1:
        actors = options.actors or int(gpus)
        return actors, min(1.0, gpus / actors), min(cpus, total / actors)
    actors = options.actors or max(1, int(total // cpus))
    return actors, 0.0, min(cpus, total / actors)


def embedder(options: RayOptions) -> Callable[..., Encoder]:
    """A drop-in for indexer.pipeline's embed stage that embeds on Ray (pipeline.run's
    `embed_all`)."""

    def dispatch(
        units: Sequence[shards.Unit], name: str, weights: str, settings: Settings, key: str,
        folder: Path, writer: ShardWriter,
    ) -> None:  # fmt: skip
        ray = import_ray()
        started = connect(ray, options)
        try:
            for unit_key in _run(ray, units, name, weights, settings, key, folder, options):
                unit = shards.shard_path(folder, shards.Unit(unit_key, ()))
                writer.add(shards.read(unit, unit=unit_key, model=key))
        finally:
            if started:
                ray.shutdown()

    return embedder_for(
        dispatch, shard_dir=options.shard_dir, shard_size=options.shard_size, check=import_ray
    )


def _run(
    ray: Any,
    units: Sequence[shards.Unit],
    name: str,
    weights: str,
    settings: Settings,
    run_key: str,
    folder: Path,
    options: RayOptions,
) -> Any:
    """Yield the key of each unit whose shard is written, as the actors finish them."""
    actors, gpus, cpus = pool_shape(ray.cluster_resources(), options)
    actors = min(actors, len(units))
    log.info("ray: %d units to %d actors (%.2f GPU, %.2f CPU each)", len(units), actors, gpus, cpus)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = log.isEnabledFor(logging.DEBUG)
    items = [{"key": u.key, "paths": json.dumps(u.paths)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 10_000))
    ds = ds.map_batches(
        EmbedActor,
        batch_size=1,  # one unit per call: a retried task redoes whole units, never parts
        batch_format="numpy",
        # Ray Data restarts a lost actor and retries its task (a task that raises fails the run)
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
        num_gpus=gpus,
        fn_constructor_kwargs=dict(
            name=name,
            weights=weights,
            settings=settings,
            run_key=run_key,
            folder=str(folder),
            threads=max(1, int(cpus)),
            crash_once=options.crash_once,
        ),  # fmt: skip
    )
    try:
        for row in ds.iter_rows():
            yield str(row["key"])
    except ray.exceptions.RayError as exc:
        cause = root_cause(exc)
        if isinstance(cause, ImgsearchError):  # e.g. an actor's model check: its own words
            raise ImgsearchError(str(cause)) from exc
        raise ImgsearchError(
            f"the Ray job failed ({describe(exc, cause)}); what was "
            f"imported is kept, and the finished shards in {folder} are imported by the next "
            f"`imgsearch index --engine ray`"
        ) from exc


def root_cause(exc: BaseException) -> BaseException:
    """The user-code exception inside Ray's wrappers (RayTaskError -> UserCodeException -> ...)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def describe(exc: BaseException, cause: BaseException) -> str:
    """'Type: message' of the error in the actor; Ray ships user errors as traceback text, so
    its last 'SomeError: ...' line (ANSI colours removed) when the object did not survive."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if type(cause).__name__ not in ("UserCodeException",) and cause is not exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause))
        return f"{type(cause).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"
    for line in reversed(text.splitlines()):
        found = re.match(r"\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)", line)
        if found and "UserCodeException" not in found.group(1):
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2).strip()}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


__all__ = ["EmbedActor", "RayOptions", "embedder", "import_ray", "pool_shape"]
