"""Decoding overlaps model loading: the pool starts before the model loads, the model's own
preprocessing is what counts, and a gated stream decodes only while its consumer waits."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from imgsearch import modelspec
from imgsearch.decode import Decoded, decode
from imgsearch.library import Library
from imgsearch.modelspec import ModelSpec, PreprocessSpec
from indexer import pipeline

SPEC = PreprocessSpec((32, 32), (0.5,) * 3, (0.5,) * 3)


def test_decoding_starts_on_construction_before_any_image_is_taken(pictures):
    paths = [str(p) for p in pictures[:12]]
    want = [decode(p, SPEC, max_pixels=10**8).pixels for p in paths]
    stream = pipeline.DecodeStream(
        paths, SPEC, workers=2, max_pixels=10**8, lookahead=8, startup=64
    )
    deadline = time.monotonic() + 60
    while stream.backlog() < len(paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in paths:  # gone before the first item is taken: only early decoding can succeed
        os.unlink(p)
    got = list(stream)
    assert all(isinstance(item, Decoded) for item in got), got
    assert [item.path for item in got] == paths
    for item, pixels in zip(got, want):
        np.testing.assert_array_equal(item.pixels, pixels)


def test_a_closed_stream_yields_nothing_more_and_closes_twice(pictures):
    stream = pipeline.DecodeStream(
        [str(p) for p in pictures], SPEC, workers=2, max_pixels=10**8, lookahead=4
    )
    stream.close()
    assert list(stream) == []
    stream.close()


@pytest.fixture
def seen_specs(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "model-specs.json"
    monkeypatch.setattr(modelspec, "_seen_path", lambda: path)
    return path


def _events(monkeypatch) -> list[str]:
    events: list[str] = []

    class Recording(pipeline.DecodeStream):
        def __init__(self, *args, **kwargs):
            events.append(f"decode {args[1].size[0]}px")
            super().__init__(*args, **kwargs)

    from imgsearch import runtime

    real = runtime.load_image_encoder  # the image model, onnxruntime's or torch's

    def load(*args, **kwargs):
        events.append("load model")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "DecodeStream", Recording)
    monkeypatch.setattr(runtime, "load_image_encoder", load)
    return events


def _vectors(library: Path) -> dict[str, bytes]:
    with Library.open(library) as lib:
        known = lib.known_files()
        ids, mats = zip(*lib.vectors())
    by_id = dict(zip(np.concatenate(ids).tolist(), np.concatenate(mats)))
    return {Path(p).name: by_id[row.id].tobytes() for p, row in known.items()}


def test_index_decodes_while_the_model_loads_and_checks_its_spec(
    run, tiny_model, pictures, seen_specs, tmp_path, monkeypatch
):
    folder = str(pictures[0].parent)
    events = _events(monkeypatch)
    run("index", folder, "--model", tiny_model, "--library", tmp_path / "first")
    size = Library.open(tmp_path / "first").model_spec().preprocess.size[0]
    assert events == ["load model", f"decode {size}px"]  # nothing known yet: load first

    events.clear()  # a new library, a model this machine has loaded: decode first
    run("index", folder, "--model", tiny_model, "--library", tmp_path / "second")
    assert events == [f"decode {size}px", "load model"]
    assert _vectors(tmp_path / "second") == _vectors(tmp_path / "first")

    spec = Library.open(tmp_path / "first").model_spec()
    wrong = ModelSpec(spec.name, spec.pretrained, spec.dim, SPEC)  # a stale cache entry
    modelspec.remember(wrong)
    events.clear()
    run("index", folder, "--model", tiny_model, "--library", tmp_path / "third")
    assert events == ["decode 32px", "load model", f"decode {size}px"]  # redone at the right size
    assert _vectors(tmp_path / "third") == _vectors(tmp_path / "first")


def test_a_gated_stream_decodes_only_while_its_consumer_waits(pictures):
    """Between batches the model computes; a gated stream must not decode under it."""
    paths = [str(p) for p in pictures[:12]]
    stream = pipeline.DecodeStream(
        paths, SPEC, workers=2, max_pixels=10**8, lookahead=4, gated=True
    )
    items = iter(stream)
    first = [next(items) for _ in range(4)]  # one batch taken; the consumer now "computes"
    time.sleep(0.5)
    for p in paths[4:]:  # nothing more may have been decoded meanwhile
        os.unlink(p)
    rest = list(items)
    assert all(isinstance(item, Decoded) for item in first)
    assert [item.path for item in rest] == paths[4:]
    assert not any(isinstance(item, Decoded) for item in rest)


def _threads_a_decode_starts(path: str) -> int:
    """In a decode worker: threads after one decode (its pHash's products call BLAS) minus
    threads before it, so that threads a library starts for other reasons do not count."""
    before = len(os.listdir("/proc/self/task"))
    decode(path, SPEC, max_pixels=10**8)
    return len(os.listdir("/proc/self/task")) - before


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="BLAS starts no threads on one core")
def test_decode_workers_run_their_blas_on_one_thread(pictures):
    """One decoder per core is the design: a worker whose pHash had OpenBLAS start a thread
    per core ran at half the rate beside its sibling (benchmarks/ONNX.md)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=pipeline._decode_context()) as pool:
        started = list(pool.map(_threads_a_decode_starts, [str(p) for p in pictures[:4]]))
    assert started == [0] * 4


def test_decoders_beside_a_cpu_model_run_at_low_priority(pictures):
    """`index` with the model on the CPU gives its decoders DECODE_NICE: the model's runs keep
    their cores and the decoders take what those leave."""
    paths = [str(p) for p in pictures[:12]]
    base = os.nice(0)
    with pipeline.DecodeStream(
        paths, SPEC, workers=2, max_pixels=10**8, lookahead=8, gated=True, nice=5
    ) as stream:
        assert stream._pool is not None
        assert stream._pool.submit(os.nice, 0).result() == min(base + 5, 19)
        assert [item.path for item in stream] == paths


def test_starved_decoders_go_back_to_normal_priority_and_lose_nothing(pictures, monkeypatch):
    """When the consumer has waited long enough for decoded images (other programs have the
    cores), chunks not yet started move to a pool at normal priority; order and content stay."""
    monkeypatch.setattr(pipeline, "STARVED_S", 0.0)  # starved from the first chunk on
    monkeypatch.setattr(pipeline, "STARVED_SHARE", 0.0)
    paths = [str(p) for p in pictures[:24]]
    want = [decode(p, SPEC, max_pixels=10**8).pixels for p in paths]
    base = os.nice(0)
    stream = pipeline.DecodeStream(
        paths, SPEC, workers=2, max_pixels=10**8, lookahead=8, gated=True, nice=5
    )
    items = iter(stream)
    got = [next(items)]
    assert stream.nice == 0 and stream._pool is not None
    assert stream._pool.submit(os.nice, 0).result() == base  # the new pool: normal priority
    got += list(items)
    assert [item.path for item in got] == paths
    for item, pixels in zip(got, want):
        np.testing.assert_array_equal(item.pixels, pixels)


def test_a_cpu_index_asks_for_low_priority_decoders_and_a_gpu_one_does_not(monkeypatch):
    """The run's streams: gated at DECODE_NICE beside a CPU model, normal priority beside a GPU."""
    made: list[tuple[bool, int]] = []

    class Stream:
        def __init__(self, paths, spec, **kwargs):
            made.append((kwargs["gated"], kwargs["nice"]))

    monkeypatch.setattr(pipeline, "DecodeStream", Stream)
    for device in ("cpu", "cuda"):
        settings = type("S", (), {"workers": 2, "batch_size": 4, "max_pixels": 10**8})()
        decoding = pipeline._stream_factory(["a.jpg"], settings)  # type: ignore[arg-type]
        decoding(SPEC, on_cpu=device == "cpu")
    assert made == [(True, pipeline.DECODE_NICE), (False, 0)] and pipeline.DECODE_NICE > 0
