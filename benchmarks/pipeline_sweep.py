"""Decode workers x torch threads: steady-state indexing rate of the pipeline's own two stages.

    python benchmarks/pipeline_sweep.py --photos ../shared/photos/imagenet-500 -n 128 \\
        --workers 1,2 --threads 1,2 --rounds 2

Runs indexer.pipeline.DecodeStream (as the indexer sets it up) feeding Encoder.embed_pixels in
batches, in one process with the model loaded once, for every (workers, torch threads) pair;
rounds alternate the order so drifting machine load hits every pair alike. No storage, no
start-up: this is the rate `imgsearch index` can reach between its fixed costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import photos, warm_page_cache  # noqa: E402
from benchmarks.throughput import MODEL, WEIGHTS  # noqa: E402

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder


def pipeline_rate(
    paths: list[Path], encoder: Encoder, settings: Settings, *, workers: int, threads: int
) -> float:
    """Images/s of decode (process pool) -> batched embed, as indexer.pipeline._embed_all."""
    import torch

    from imgsearch.decode import Decoded
    from indexer.pipeline import DecodeStream

    torch.set_num_threads(threads)
    batch: list[np.ndarray] = []
    t0 = time.perf_counter()
    stream = DecodeStream(
        [str(p) for p in paths],
        encoder.spec.preprocess,
        workers=workers,
        max_pixels=settings.max_pixels,
        lookahead=settings.batch_size,
        gated=True,  # as indexer.pipeline._embed_all decodes for a model on the CPU
    )
    for item in stream:
        if isinstance(item, Decoded):
            batch.append(item.pixels)
        if len(batch) >= settings.batch_size:
            encoder.embed_pixels(np.stack(batch))
            batch.clear()
    if batch:
        encoder.embed_pixels(np.stack(batch))
    return len(paths) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("-n", type=int, default=128, help="photos per measurement")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    from imgsearch import config
    from imgsearch.encoder import load_encoder

    settings = config.resolve()
    encoder = load_encoder(MODEL, WEIGHTS, "cpu")
    paths = photos(args.photos, args.n)
    warm_page_cache(paths)
    pairs = [(int(w), int(t)) for w in args.workers.split(",") for t in args.threads.split(",")]
    pipeline_rate(paths[: settings.batch_size], encoder, settings, workers=1, threads=1)  # warm
    rates: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for workers, threads in pairs if r % 2 == 0 else pairs[::-1]:
            rate = pipeline_rate(paths, encoder, settings, workers=workers, threads=threads)
            rates.setdefault(f"workers={workers} threads={threads}", []).append(rate)
            print(f"workers={workers} torch_threads={threads}: {rate:.2f} img/s", flush=True)
    summary = {k: round(float(np.median(v)), 3) for k, v in rates.items()}
    print(json.dumps({"cpu_count": os.cpu_count(), "images": len(paths), "median_img_s": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
