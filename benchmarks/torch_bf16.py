"""torch's bf16 on the CPU against fp32, for the image tower (issue 9's lower-precision
candidates): images per second on random pixels, one process, rounds interleaved. Two kinds of
bf16: autocast over the fp32 model, and bf16 weights (open_clip's `precision="bf16"`, what the
`torch_precision = "bf16"` setting loads), each with its lowest cosine against fp32.

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
    low = open_clip.create_model(args.model, pretrained=None, precision="bf16").eval()
    low.load_state_dict(model.state_dict())  # the same weights, cast as the factory casts them
    size = model.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    pixels = torch.randn(args.batch, 3, *size)
    variants = {  # name: (model, input, context)
        "fp32": (model, pixels, contextlib.nullcontext),
        "bf16 autocast": (model, pixels, lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "bf16 weights": (low, pixels.bfloat16(), contextlib.nullcontext),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cosines: dict[str, float] = {}
    with torch.inference_mode():
        ref = model.encode_image(pixels).float()
        for name, (net, x, context) in variants.items():
            with context():
                got = net.encode_image(x).float()
            cosines[name] = torch.nn.functional.cosine_similarity(ref, got).min().item()
        for r in range(args.rounds):
            for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
                net, x, context = variants[name]
                with context():
                    net.encode_image(x)  # warm-up of this variant's kernels
                    start = time.perf_counter()
                    for _ in range(args.batches):
                        net.encode_image(x)
                rates[name].append(args.batch * args.batches / (time.perf_counter() - start))
    result = {
        "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
        "load_average_end": os.getloadavg()[0],
        **{f"cosine_min_vs_fp32 {name}": c for name, c in cosines.items() if name != "fp32"},
        **{f"img_s {name}": statistics.median(v) for name, v in rates.items()},
        "runs": {name: [round(x, 2) for x in v] for name, v in rates.items()},
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
