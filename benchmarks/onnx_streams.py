"""The image tower's threading on the CPU: one run on every core's thread, against one
single-threaded stream per core at once on shares of each batch (what `OnnxImageEncoder` does by
default), each stream in runs of at most `--run-images` images (the default's RUN_IMAGES among
them). Random uint8 batches, interleaved rounds, one process; the export must exist (any
`imgsearch index --model MODEL --pretrained none` makes it).

    python benchmarks/onnx_streams.py [--model ViT-B-32-256] [-n 128] [--rounds 3]
        [--run-images 16,8,4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgsearch import exports, imageonnx  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32-256")
    ap.add_argument("-n", type=int, default=128, help="images per timed pass")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--run-images", default="16,8,4", help="images per run of a stream")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    folder = exports.image_export_dir(args.model, "none")
    if not imageonnx.exported(folder):
        sys.exit(f"no ONNX export of {args.model} in {folder}: index once with that model first")
    cores = os.cpu_count() or 1
    streams = imageonnx.OnnxImageEncoder(folder)
    default = imageonnx.RUN_IMAGES
    variants = {
        f"one run on {cores} threads": (imageonnx.OnnxImageEncoder(folder, threads=cores), 0)
    }
    for k in (int(x) for x in args.run_images.split(",") if x):
        mark = " (default)" if k == default else ""
        variants[f"{cores} streams at once, 1 thread each, runs of {k}{mark}"] = (streams, k)
    h, w = streams.spec.preprocess.size
    pixels = np.random.default_rng(0).integers(0, 256, (args.batch, h, w, 3), dtype=np.uint8)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for enc, _ in variants.values():
        enc.embed_pixels(pixels)  # warm-up: pre-packing, arena
    for r in range(args.rounds):
        order = list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]
        for name, (enc, k) in order:
            enc.run_images = k or default
            start = time.perf_counter()
            for _ in range(0, args.n, args.batch):
                enc.embed_pixels(pixels)
            rates[name].append(args.n / (time.perf_counter() - start))
    load = os.getloadavg()[0]
    result = {
        "model": args.model, "batch": args.batch, "cores": cores, "load_average_end": load,
        **{f"img_s: {name}": statistics.median(v) for name, v in rates.items()},
        "runs": {name: [round(x, 2) for x in v] for name, v in rates.items()},
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
