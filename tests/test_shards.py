"""indexer.shards: unit keys that a retry reproduces, and Parquet shards that round-trip exactly."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from imgsearch.errors import ImgsearchError
from imgsearch.photo import PhotoMeta
from indexer import shards
from indexer.walk import FileEntry

pytest.importorskip("pyarrow")


def entries(n: int, *, mtime: int = 1) -> list[FileEntry]:
    return [FileEntry(f"/photos/p{i}.jpg", 100 + i, mtime, "/photos") for i in range(n)]


def test_unit_keys_depend_on_files_and_model_only():
    first = shards.plan_units(entries(10), "model-a", 4)
    assert [len(u.paths) for u in first] == [4, 4, 2]
    assert shards.plan_units(entries(10), "model-a", 4) == first  # a retry: the same names
    assert len({u.key for u in first}) == 3
    touched = shards.plan_units(entries(10, mtime=2), "model-a", 4)
    assert not {u.key for u in touched} & {u.key for u in first}
    other = shards.plan_units(entries(10), "model-b", 4)
    assert not {u.key for u in other} & {u.key for u in first}


def test_a_shard_round_trips_vectors_metadata_and_failures(tmp_path):
    meta = PhotoMeta(
        taken_at="2024-05-01T10:00:00.250+02:00", taken_at_source="DateTimeOriginal",
        camera_make="Canon", camera_model="EOS R5", lens="RF24-70mm F2.8 L IS USM",
        latitude=48.8584, longitude=2.2945, altitude=35.5, orientation=6, width=4000,
        height=6000, file_type="jpeg", folder="/photos",
    )  # fmt: skip
    vec = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    rows = [
        shards.ShardRow("/photos/a.jpg", 10, 20, None, "fp", 4000, 6000, meta.taken_at, vec, meta),
        shards.ShardRow("/photos/bad.jpg", 3, 4, "not an image"),
        shards.ShardRow(os.fsdecode(b"/photos/caf\xe9.jpg"), 5, 6, "Latin-1 name, not UTF-8"),
    ]
    path = tmp_path / "k.parquet"
    shards.write(path, rows, 8, unit="k", model="m")
    back = shards.read(path, unit="k", model="m")
    assert back[0].vector.tobytes() == vec.tobytes()  # bit-exact
    assert back[0].meta == meta
    assert dataclasses.replace(back[0], vector=None) == dataclasses.replace(rows[0], vector=None)
    assert back[1:] == rows[1:]
    shards.write(path, rows, 8, unit="k", model="m")  # a retried task: replaced, not appended
    assert len(shards.read(path, unit="k", model="m")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["k.parquet"]  # no temp file left


def test_a_shard_of_another_model_or_a_broken_file_is_refused(tmp_path):
    path = tmp_path / "k.parquet"
    shards.write(path, [shards.ShardRow("/p.jpg", 1, 1, "bad")], 4, unit="k", model="m")
    with pytest.raises(ImgsearchError, match="another run or model"):
        shards.read(path, unit="k", model="other")
    path.write_bytes(b"PAR1 truncated")
    with pytest.raises(ImgsearchError, match="unreadable shard.*delete it"):
        shards.read(path, unit="k", model="m")
