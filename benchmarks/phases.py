"""The suite's measurements, each run by benchmarks/run.py in a fresh interpreter.

A phase takes a JSON-able dict and returns a flat JSON-able dict. Fresh processes keep torch
(and its threads) away from the query-time code being timed and give memory back between steps.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import throughput

PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def phase(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    """Register a measurement that run_phase executes in a fresh process."""
    PHASES[fn.__name__] = fn
    return fn


def _settings() -> Any:
    from imgsearch import config

    return config.resolve()


def _spec(params: dict[str, Any]) -> Any:
    from imgsearch.modelspec import ModelSpec

    return ModelSpec.from_json(params["model_spec"])


# ---- phases (each in its own process) ---------------------------------------------------------
@phase
def encode(params: dict[str, Any]) -> dict[str, Any]:
    """Model ceiling: embed_pixels on random uint8 batches at the indexer's batch size, with
    the runtime `params["runtime"]` (torch, or onnx: the ONNX export, made here if missing)."""
    if params.get("runtime") == "onnx":
        return _encode_onnx(params)
    import torch

    from imgsearch.encoder import load_encoder

    settings = _settings()
    encoder = load_encoder(throughput.MODEL, throughput.WEIGHTS, settings.device)
    rate = throughput.encode_rate(encoder, settings.batch_size, seconds=params["seconds"])
    return {
        "encode_img_s": rate,
        "device": encoder.device,
        "precision": str(encoder.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "batch_size": settings.batch_size,
        "workers": settings.workers or (os.cpu_count() or 1),
        "model_spec": encoder.spec.to_json(),
    }


def _encode_onnx(params: dict[str, Any]) -> dict[str, Any]:
    from imgsearch import config
    from imgsearch.runtime import load_image_encoder

    settings = config.replace(_settings(), runtime="onnx", device="cpu")
    t0 = time.perf_counter()
    encoder = load_image_encoder(throughput.MODEL, throughput.WEIGHTS, settings)
    if type(encoder).__name__ != "OnnxImageEncoder":
        raise RuntimeError(f"{throughput.MODEL}: the ONNX image export failed")
    load_s = time.perf_counter() - t0
    rate = throughput.encode_rate(encoder, settings.batch_size, seconds=params["seconds"])
    return {"encode_img_s": rate, "onnx_load_s": load_s, "onnx_precision": encoder.precision}


@phase
def onnx_fidelity(params: dict[str, Any]) -> dict[str, Any]:
    """ONNX vs torch image vectors of the same decoded photos: min cosine, top-10 agreement."""
    import numpy as np

    from imgsearch import exports, imageonnx
    from imgsearch.decode import Decoded, decode
    from imgsearch.encoder import load_encoder

    torch_enc = load_encoder(throughput.MODEL, throughput.WEIGHTS, "cpu")
    folder = exports.image_export_dir(throughput.MODEL, throughput.WEIGHTS)
    exports.export_image_encoder(folder, torch_enc)
    onnx_enc = imageonnx.OnnxImageEncoder(folder)
    spec, max_pixels = torch_enc.spec.preprocess, _settings().max_pixels
    ref, got = [], []
    paths = params["paths"]
    for start in range(0, len(paths), 32):
        items = [decode(p, spec, max_pixels=max_pixels) for p in paths[start : start + 32]]
        pixels = np.stack([i.pixels for i in items if isinstance(i, Decoded)])
        ref.append(torch_enc.embed_pixels(pixels))
        got.append(onnx_enc.embed_pixels(pixels))
    cos, same_top = imageonnx.compare(np.concatenate(ref), np.concatenate(got))
    return {"onnx_image_cosine_min": cos, "onnx_image_top10_same": same_top,
            "onnx_fidelity_images": int(sum(len(r) for r in ref))}  # fmt: skip


@phase
def decode(params: dict[str, Any]) -> dict[str, Any]:
    """decode + preprocess alone through indexer.pipeline.DecodeStream."""
    paths = [Path(p) for p in params["paths"]]
    settings, decoder = _settings(), None
    if params["device"].startswith("cuda"):  # the indexer may decode JPEGs on the GPU
        from imgsearch.encoder import load_encoder
        from indexer.pipeline import device_decoder

        encoder = load_encoder(throughput.MODEL, throughput.WEIGHTS, params["device"])
        decoder = device_decoder(settings, encoder)
    rate, failed = throughput.decode_rate(paths, _spec(params).preprocess, settings, decoder)
    return {"img_s": rate, "failed": failed, "on_device": decoder is not None}


@phase
def psnr(params: dict[str, Any]) -> dict[str, Any]:
    """Indexer model input (draft decode) vs open_clip's transform of the full-size image."""
    from benchmarks.fidelity import corpus_psnr

    spec = _spec(params).preprocess
    fid = corpus_psnr([Path(p) for p in params["paths"]], spec, _settings().max_pixels)
    return asdict(fid)


@phase
def query_library(params: dict[str, Any]) -> dict[str, Any]:
    """The synthetic N-image library (cached between runs): see benchmarks/synthlib.py."""
    from benchmarks import synthlib
    from benchmarks.synth import Mixture
    from imgsearch.encoder import load_encoder

    settings, mix, n = _settings(), Mixture(), params["n"]
    cache = Path(params["cache"])
    path = cache / f"library-{n}-{synthlib.library_key(n, settings, mix)}"
    t0 = time.perf_counter()
    if params["rebuild"] or not synthlib.is_complete(path, n):
        encoder = load_encoder(throughput.MODEL, throughput.WEIGHTS, "cpu")
        synthlib.synthetic_library(path, n, encoder, settings, mix=mix, cache=cache / "vectors")
    return {"path": str(path), "seconds": time.perf_counter() - t0}


@phase
def warm_query(params: dict[str, Any]) -> dict[str, Any]:
    """Searcher.query(text) latency on a warm Searcher (this process never imports torch)."""
    from benchmarks.querybench import warm_query_latency

    out = warm_query_latency(Path(params["library"]), _settings(), count=params["count"])
    return {**out, "torch_imported": "torch" in sys.modules}


@phase
def search(params: dict[str, Any]) -> dict[str, Any]:
    """VectorIndex build + single-query search at size n, recall@10 vs exact, both query sets."""
    import faiss

    from benchmarks.synth import Mixture, cached_sample
    from benchmarks.vectorbench import exact_neighbours, held_out, library_index, library_search

    mix, n = Mixture(), params["n"]
    base = cached_sample(mix, n, seed=0, cache=Path(params["cache"]) / "vectors")
    queries = held_out(mix, params["queries"])
    truth = {k: exact_neighbours(base, q, 10) for k, q in queries.items()}
    vindex, build_s = library_index(base, _settings())
    out: dict[str, Any] = {"kind": vindex.kind, "build_s": build_s}
    default_threads = faiss.omp_get_max_threads()
    for threads in (default_threads, 1):
        faiss.omp_set_num_threads(threads)
        for kind, qs in queries.items():
            fig = library_search(vindex, qs, truth[kind])
            suffix = f"_{kind}" + ("" if threads == default_threads else f"_{threads}thread")
            out["p50_ms" + suffix] = fig.p50_ms
            out["p95_ms" + suffix] = fig.p95_ms
            out["recall10" + suffix] = fig.recall
    out["threads"] = default_threads
    return out


@phase
def seed_reindex(params: dict[str, Any]) -> dict[str, Any]:
    """A library holding every file of the tree, as a finished first `index` run leaves it."""
    from benchmarks.synthlib import seed_library

    n = seed_library(Path(params["library"]), Path(params["tree"]), _spec(params), _settings())
    return {"files": n}
