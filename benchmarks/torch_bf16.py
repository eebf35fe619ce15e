"""torch's bf16 autocast on the CPU against fp32, for the image tower (issue 9's lower-precision
candidates): images per second on random pixels, one process, rounds interleaved.

    python benchmarks/torch_bf16.py [--model ViT-B-32-256] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32-256")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=4, help="batches per timed pass")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).eval()
    size = model.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    pixels = torch.randn(args.batch, 3, *size)
    variants = {
        "fp32": contextlib.nullcontext,
        "bf16 autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        ref = model.encode_image(pixels).float()
        with variants["bf16 autocast"]():
            low = model.encode_image(pixels).float()
        cosine = torch.nn.functional.cosine_similarity(ref, low).min().item()
        for r in range(args.rounds):
            for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
                with variants[name]():
                    model.encode_image(pixels)  # warm-up of this variant's kernels
                    start = time.perf_counter()
                    for _ in range(args.batches):
                        model.encode_image(pixels)
                rates[name].append(args.batch * args.batches / (time.perf_counter() - start))
    result = {
        "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
        "load_average_end": os.getloadavg()[0], "bf16_cosine_min_vs_fp32": cosine,
        **{f"img_s {name}": statistics.median(v) for name, v in rates.items()},
        "runs": {name: [round(x, 2) for x in v] for name, v in rates.items()},
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
