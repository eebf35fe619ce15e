"""onnxruntime session settings for the image encoder, measured side by side (benchmarks/ONNX.md).

    python benchmarks/onnx_tuning.py [--seconds 4] [--rounds 3] [--model ViT-B-32]

Each variant is a session on the cached export (made first if missing), run on the same random
uint8 batch, round-robin so that a drifting machine hurts all alike. Reported per variant:
images/s of wall-clock and images per CPU-second of this process (on a busy shared machine the
second is the steadier figure), and the RSS the session added. int8: dynamic quantisation of
the MatMul weights, with its fidelity against the fp32 export on the probe images. `static`: the
batch dimension fixed at the session (`add_free_dimension_override_by_name`), so that shapes
are known when the graph is planned; `iobinding`: input and output bound once as OrtValues and
the batch run with `run_with_iobinding`, the output buffer reused.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def session(
    path: Path,
    *,
    threads: int,
    level: str = "all",
    arena: bool = True,
    static: int = 0,
    iobinding: bool = False,
) -> object:
    """`iobinding` is the run's business (see `runner`), taken here so variants are one dict."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if static:
        opts.add_free_dimension_override_by_name("batch", static)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = arena
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def runner(sess: object, x: np.ndarray, iobinding: bool, dim: int) -> Callable[[], object]:
    """A no-argument call that embeds `x` once: plain `run`, or a run on bound OrtValues."""
    if not iobinding:
        return lambda: sess.run(None, {"pixels": x})  # type: ignore[attr-defined]
    import onnxruntime as ort

    binding = sess.io_binding()  # type: ignore[attr-defined]
    binding.bind_ortvalue_input("pixels", ort.OrtValue.ortvalue_from_numpy(x))
    out = ort.OrtValue.ortvalue_from_shape_and_type((len(x), dim), np.float32)
    binding.bind_ortvalue_output("image_features", out)
    return lambda: sess.run_with_iobinding(binding)  # type: ignore[attr-defined]


def embed_probes(sess: object, probes: np.ndarray, static: int) -> np.ndarray:
    """All probe images through `sess`; a static-batch session takes them `static` at a time,
    the last batch padded (the same probes for every variant)."""
    step = static or len(probes)
    out = []
    for i in range(0, len(probes), step):
        part = probes[i : i + step]
        padded = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)])
        out.append(sess.run(None, {"pixels": padded})[0][: len(part)])  # type: ignore[attr-defined]
    return np.concatenate(out)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated variant names")
    args = ap.parse_args()

    from imgsearch import exports, imageonnx
    from imgsearch.encoder import load_encoder

    fp32 = exports.image_export_dir(args.model, "none")
    int8 = exports.image_export_dir(args.model, "none", "int8")
    torch_enc = None
    for folder, precision in ((fp32, "fp32"), (int8, "int8")):
        if not imageonnx.exported(folder):
            torch_enc = torch_enc or load_encoder(args.model, "none", "cpu")
            exports.export_image_encoder(folder, torch_enc, precision=precision)
    del torch_enc
    cores = os.cpu_count() or 1
    graph = fp32 / imageonnx.GRAPH
    variants = {
        f"fp32 all t{cores} b32": (graph, dict(threads=cores), 32),
        f"fp32 all t{cores} b8": (graph, dict(threads=cores), 8),
        f"fp32 all t{cores} b16": (graph, dict(threads=cores), 16),
        f"fp32 all t{cores} b64": (graph, dict(threads=cores), 64),
        "fp32 all t1 b32": (graph, dict(threads=1), 32),
        "fp32 all t1 b16": (graph, dict(threads=1), 16),
        "fp32 all t1 b16 static": (graph, dict(threads=1, static=16), 16),
        "fp32 all t1 b16 iobinding": (graph, dict(threads=1, iobinding=True), 16),
        "fp32 all t1 b16 static+iobinding": (graph, dict(threads=1, static=16, iobinding=True), 16),
        f"fp32 extended t{cores} b32": (graph, dict(threads=cores, level="extended"), 32),
        f"fp32 none t{cores} b32": (graph, dict(threads=cores, level="none"), 32),
        f"fp32 no-arena t{cores} b32": (graph, dict(threads=cores, arena=False), 32),
        f"int8 all t{cores} b32": (int8 / imageonnx.GRAPH, dict(threads=cores), 32),
    }
    if args.only:
        keep = args.only.split(",")
        variants = {k: v for k, v in variants.items() if any(w in k for w in keep)}
    sessions, added = {}, {}
    for name, (path, opts, _) in variants.items():
        before = rss_mb()
        sessions[name] = session(path, **opts)
        added[name] = rss_mb() - before
    rng = np.random.default_rng(0)
    from imgsearch.modelspec import ModelSpec

    spec = ModelSpec.from_json(imageonnx._read_manifest(fp32)["spec"])
    height, width = spec.preprocess.size
    figures = {name: [0, 0.0, 0.0] for name in variants}
    for _ in range(args.rounds):
        for name, (_, opts, batch) in variants.items():
            x = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
            run = runner(sessions[name], x, bool(opts.get("iobinding")), spec.dim)
            run()
            t0, c0, n = time.perf_counter(), time.process_time(), 0
            while time.perf_counter() - t0 < args.seconds:
                run()
                n += batch
            figures[name][0] += n
            figures[name][1] += time.perf_counter() - t0
            figures[name][2] += time.process_time() - c0
    probes = imageonnx.probe_pixels(height, width)
    first = next(iter(variants))
    ref = embed_probes(sessions[first], probes, variants[first][1].get("static", 0))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {cores} cores")
    print(f"{'variant':<28} {'img/s':>7} {'img/cpu-s':>9} {'+RSS MB':>8} {'cos min':>9} top10")
    for name, (n, wall, cpu) in figures.items():
        got = embed_probes(sessions[name], probes, variants[name][1].get("static", 0))
        got /= np.linalg.norm(got, axis=1, keepdims=True)
        cos, top = imageonnx.compare(ref, got)
        print(
            f"{name:<28} {n / wall:>7.1f} {n / cpu:>9.2f} {added[name]:>8.0f} {cos:>9.6f} {top:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
