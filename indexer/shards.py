"""Work units and their Parquet shards: what a distributed embed run hands back to the writer.

A unit is a fixed list of files (planned on the driver); its key hashes the model and every
file's (path, size, mtime), so a retried or repeated task writes the same shard name and the
same rows: shards are idempotent, a crashed worker never leaves a duplicate. One shard holds
one unit: a row per file, `status` ok (vector + what the library stores) or error (reason).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgsearch.errors import ImgsearchError
from imgsearch.photo import PhotoMeta
from imgsearch.photohash import pack

if TYPE_CHECKING:
    import pyarrow as pa

    from imgsearch.decode import Decoded, DecodeFailed
    from indexer.walk import FileEntry

SHARD_DIR = "ray-shards"  # under the library unless the engine's options say where
LAYOUT = 2  # bump when the columns change: a shard of another layout is never imported
SUFFIX = ".parquet"
META_PREFIX = "meta_"  # PhotoMeta fields, one column each
# Text is stored as the exact bytes (os.fsencode): a file name need not be UTF-8.
_ARROW = {"str": "binary", "str | None": "binary", "int": "int64", "float | None": "float64"}


@dataclass(frozen=True)
class Unit:
    """One task's worth of files; `key` names its shard."""

    key: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class ShardRow:
    """One file as a worker left it: `vector` None when it failed (`reason` says why)."""

    path: str
    size: int
    mtime_ns: int
    reason: str | None
    fingerprint: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    vector: npt.NDArray[np.float32] | None = None
    meta: PhotoMeta | None = None
    phash: bytes | None = None  # photohash.pack of the decoder's perceptual hash


def model_key(spec: Any, settings: Any) -> str:
    """What a shard's rows depend on: the model (identity, input geometry) and the settings
    that change its vectors or what is decoded; a leftover shard of other ones is not reused."""
    keys = ("runtime", "device", "onnx_precision", "torch_precision", "max_pixels")
    used = {k: getattr(settings, k) for k in keys}
    return json.dumps({"spec": json.loads(spec.to_json()), "settings": used}, sort_keys=True)


def plan_units(entries: Sequence[FileEntry], model: str, size: int) -> list[Unit]:
    """Files -> units of `size` in walk order; keys depend only on the model and the files."""
    units = []
    for start in range(0, len(entries), size):
        part = entries[start : start + size]
        digest = hashlib.sha256(f"imgsearch-shard {LAYOUT}\n{model}\n".encode())
        for e in part:
            digest.update(f"{e.path}\0{e.size}\0{e.mtime_ns}\n".encode())
        units.append(Unit(digest.hexdigest()[:32], tuple(e.path for e in part)))
    return units


def row_of(item: Decoded | DecodeFailed, vector: npt.NDArray[np.float32] | None) -> ShardRow:
    """A decoded (and embedded) file, or a failure with the file's stat as the worker saw it."""
    if vector is None:
        try:
            st = os.stat(item.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # vanished: the writer checks again and records nothing
        return ShardRow(item.path, size, mtime, getattr(item, "reason", "not embedded"))
    return ShardRow(
        path=item.path, size=item.size, mtime_ns=item.mtime_ns, reason=None,
        fingerprint=item.fingerprint, width=item.width, height=item.height,
        taken_at=item.taken_at, vector=np.asarray(vector, np.float32), meta=item.meta,
        phash=pack(item.phash) if item.phash is not None else None,
    )  # fmt: skip


def schema(dim: int) -> pa.Schema:
    """The columns of a shard of `dim`-wide vectors."""
    import pyarrow as pa

    fields = [
        pa.field("path", pa.binary(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("reason", pa.binary()),
        pa.field("fingerprint", pa.binary()),
        pa.field("width", pa.int64()),
        pa.field("height", pa.int64()),
        pa.field("taken_at", pa.binary()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("phash", pa.binary()),
    ]
    for f in dataclasses.fields(PhotoMeta):
        fields.append(pa.field(META_PREFIX + f.name, getattr(pa, _ARROW[str(f.type)])()))
    return pa.schema(fields)


def write(path: Path, rows: Sequence[ShardRow], dim: int, *, unit: str, model: str) -> None:
    """Write one shard atomically (temp file + os.replace): a reader sees all of it or none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {name: [] for name in schema(dim).names}
    for row in rows:
        for name in ("path", "size", "mtime_ns", "reason", "fingerprint", "width", "height"):
            columns[name].append(getattr(row, name))
        columns["taken_at"].append(row.taken_at)
        columns["phash"].append(row.phash)
        columns["vector"].append(None if row.vector is None else row.vector.tolist())
        for f in dataclasses.fields(PhotoMeta):
            value = None if row.meta is None else getattr(row.meta, f.name)
            columns[META_PREFIX + f.name].append(value)
    layout = schema(dim)
    for field in layout:
        if pa.types.is_binary(field.type) and field.name != "phash":
            values = columns[field.name]
            columns[field.name] = [None if v is None else os.fsencode(v) for v in values]
    table = pa.table(columns, schema=layout)
    table = table.replace_schema_metadata(
        {"imgsearch": json.dumps({"layout": LAYOUT, "unit": unit, "model": model, "dim": dim})}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read(path: Path, *, unit: str | None, model: str) -> list[ShardRow]:
    """The rows of a shard written for `unit` (None: any) with `model`; else an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ImgsearchError(
            f"{path}: unreadable shard ({exc}); delete it and run `imgsearch index` again"
        ) from exc
    info = json.loads((table.schema.metadata or {}).get(b"imgsearch", b"{}"))
    wanted = {"layout": LAYOUT, "unit": unit or info.get("unit"), "model": model}
    if {k: info.get(k) for k in wanted} != wanted:
        raise ImgsearchError(
            f"{path}: shard of another run or model ({info}); delete it and index again"
        )
    data = table.to_pydict()
    for field in table.schema:
        if pa.types.is_binary(field.type) and field.name != "phash":
            data[field.name] = [None if v is None else os.fsdecode(v) for v in data[field.name]]
    rows = []
    for i, path_ in enumerate(data["path"]):
        vec = data["vector"][i]
        meta = None
        if vec is not None:
            meta = PhotoMeta(
                **{f.name: data[META_PREFIX + f.name][i] for f in dataclasses.fields(PhotoMeta)}
            )
        rows.append(
            ShardRow(
                path=path_, size=data["size"][i], mtime_ns=data["mtime_ns"][i],
                reason=data["reason"][i], fingerprint=data["fingerprint"][i],
                width=data["width"][i], height=data["height"][i], taken_at=data["taken_at"][i],
                vector=None if vec is None else np.asarray(vec, np.float32), meta=meta,
                phash=data["phash"][i],
            )
        )  # fmt: skip
    return rows


def shard_path(folder: Path, unit: Unit) -> Path:
    return folder / f"{unit.key}{SUFFIX}"


__all__ = [
    "LAYOUT",
    "SHARD_DIR",
    "model_key",
    "ShardRow",
    "Unit",
    "plan_units",
    "read",
    "row_of",
    "schema",
    "write",
]
