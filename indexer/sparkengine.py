"""`imgsearch index --engine spark`: the Ray engine's units and shards, run as Spark tasks.

For users who already run Spark. One task per work unit (indexer.shards): the task's Python
worker keeps the image encoder between tasks (Spark reuses Python workers), decodes, embeds and
writes the unit's shard with indexer.rayengine.EmbedActor; the driver imports the shards when
the job ends, with the same one writer (indexer.shardimport). A retried task rewrites the same
shard, as on Ray.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgsearch.errors import ImgsearchError
from indexer import rayengine, shardimport, shards

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder

INSTALL_HINT = 'the spark engine needs pyspark and pyarrow: pip install "imgsearch[spark]"'
_ENCODERS: dict[str, rayengine.EmbedActor] = {}  # per Spark Python worker: loaded once


@dataclass(frozen=True)
class SparkOptions:
    """`master`: used when no SparkSession is active (None: local[*]); `crash_once` as in
    RayOptions. Shards go to `shard_dir` (default: the library's), shared with the executors."""

    master: str | None = None
    shard_size: int = 256
    shard_dir: Path | None = None
    crash_once: str | None = None


def import_spark() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyspark
    except ImportError as exc:
        raise ImgsearchError(f"{INSTALL_HINT} ({exc})") from exc
    return pyspark


def embed_units(args: dict[str, Any], units: Iterator[tuple[str, str]]) -> Iterator[str]:
    """One Spark partition: (key, paths as JSON) -> its shard written -> key. Module-level, so
    that Spark's pickling refers to it by name and the encoder cache survives between tasks."""
    ident = json.dumps({k: v for k, v in args.items() if k != "settings"}, sort_keys=True)
    actor = _ENCODERS.get(ident)
    if actor is None:
        actor = _ENCODERS[ident] = rayengine.EmbedActor(**args)
    for key, paths in units:
        actor({"key": [key], "paths": [paths]})
        yield key


def embedder(options: SparkOptions) -> Callable[..., Encoder]:
    """indexer.pipeline.run's `embed_all`, on Spark."""

    def dispatch(
        units: Sequence[shards.Unit], name: str, weights: str, settings: Settings, key: str,
        folder: Path, writer: shardimport.ShardWriter,
    ) -> None:  # fmt: skip
        _run(units, writer, folder, key, options, args=dict(
            name=name, weights=weights, settings=settings, run_key=key,
            folder=str(folder), threads=1, crash_once=options.crash_once,
        ))  # fmt: skip

    return shardimport.embedder(
        dispatch, shard_dir=options.shard_dir, shard_size=options.shard_size, check=import_spark
    )


def _run(
    units: Sequence[shards.Unit],
    writer: shardimport.ShardWriter,
    folder: Path,
    key: str,
    options: SparkOptions,
    args: dict[str, Any],
) -> None:
    """One Spark job, one task per unit; its shards are imported once the job is done."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()  # the caller's session wins over --address
    started = spark is None
    if spark is None:
        builder = SparkSession.builder.appName("imgsearch index")
        builder = builder.master(options.master or "local[*]")
        spark = builder.config("spark.pyspark.python", sys.executable).getOrCreate()
    rdd = spark.sparkContext.parallelize(
        [(u.key, json.dumps(u.paths)) for u in units], max(1, len(units))
    )
    done = rdd.mapPartitions(functools.partial(embed_units, args))
    try:
        keys = done.collect()  # toLocalIterator would run the partitions one by one
        for unit_key in keys:
            path = shards.shard_path(folder, shards.Unit(unit_key, ()))
            writer.add(shards.read(path, unit=unit_key, model=key))
    except Exception as exc:  # py4j / Spark job errors: untyped
        if isinstance(exc, ImgsearchError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImgsearchError(
            f"the Spark job failed ({first}); what was imported is kept, run the index "
            f"again to finish"
        ) from exc
    finally:
        if started:
            spark.stop()


__all__ = ["SparkOptions", "embedder", "import_spark"]
