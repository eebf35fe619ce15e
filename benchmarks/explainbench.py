"""Explain-a-match methods compared: pointing game and CPU cost (issue 11).

    python benchmarks/explainbench.py --tiny MODEL_DIR [--scenes 30] [--vit-b-32]

Patch occlusion (imgsearch.clip.explain, any model) against a MaskCLIP-style dense map (the last
block's value path, no query-key attention, projected per patch; open_clip ViTs only), on
two-shape scenes (tests/support/scenes.py) with the tiny trained CLIP. `--vit-b-32` also times
both on ViT-B-32 with random weights (same cost as real ones; no download).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def maskclip_heat(encoder, pixels: np.ndarray, query: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(H, W) cosine of each patch's dense embedding with the query, nearest-upsampled."""
    import torch
    import torch.nn.functional as F

    visual = encoder.model.visual
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(pixels[None])).permute(0, 3, 1, 2).float()
        x = (x - encoder._mean) / encoder._std
        x = visual._embeds(x)
        blocks = list(visual.transformer.resblocks)
        for block in blocks[:-1]:
            x = block(x)
        last = blocks[-1]
        d = last.attn.embed_dim
        y = last.ln_1(x)
        v = F.linear(y, last.attn.in_proj_weight[2 * d :], last.attn.in_proj_bias[2 * d :])
        dense = visual.ln_post(last.attn.out_proj(v)) @ visual.proj
        dense = F.normalize(dense[0, 1:], dim=-1).numpy()
    g = int(round(np.sqrt(len(dense))))
    grid = (dense @ query).reshape(g, g)
    h, w = pixels.shape[:2]
    return np.kron(grid, np.ones((h // g, w // g)))


def _occlusion_heat(encoder, pixels, query):  # type: ignore[no-untyped-def]
    from imgsearch.clip.explain import occlusion

    return occlusion(encoder, pixels, query).heat


def _gradeclip_heat(encoder, pixels, query):  # type: ignore[no-untyped-def]
    from imgsearch.clip.gradeclip import gradeclip_heat

    return gradeclip_heat(encoder, pixels, query)[0]


HEAT = {"occlusion": _occlusion_heat, "maskclip": maskclip_heat, "gradeclip": _gradeclip_heat}


def pointing(encoder, scenes, method) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    from imgsearch.clip.explain import decode_for

    hits = total = 0
    seconds = 0.0
    for path, shapes in scenes:
        pixels = decode_for(encoder, str(path))
        scale = pixels.shape[0] / 64
        for color, shape, (x0, y0, x1, y1) in shapes:
            query = encoder.embed_texts([f"a photo of a {color} {shape}."])[0]
            t0 = time.process_time()
            heat = HEAT[method](encoder, pixels, query)
            seconds += time.process_time() - t0
            y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
            hits += x0 * scale <= x < x1 * scale and y0 * scale <= y < y1 * scale
            total += 1
    return hits / total, seconds / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--vit-b-32", action="store_true")
    args = parser.parse_args()
    import tempfile

    from imgsearch.encoder import load_encoder
    from tests.support.scenes import write_scenes

    encoder = load_encoder(f"local-dir:{args.tiny}", "", "cpu")
    scenes = write_scenes(Path(tempfile.mkdtemp()), args.scenes, seed=11)
    out = {}
    for method in HEAT:
        rate, cpu = pointing(encoder, scenes, method)
        out[f"tiny_{method}_pointing"] = round(rate, 3)
        out[f"tiny_{method}_cpu_s"] = round(cpu, 4)
    out["chance"] = 0.25
    if args.vit_b_32:
        big = load_encoder("ViT-B-32", "none", "cpu")
        pixels = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
        query = big.embed_texts(["a photo of a dog."])[0]
        for method, heat in HEAT.items():
            heat(big, pixels, query)
            t0, c0 = time.perf_counter(), time.process_time()
            heat(big, pixels, query)
            out[f"vitb32_{method}_wall_s"] = round(time.perf_counter() - t0, 3)
            out[f"vitb32_{method}_cpu_s"] = round(time.process_time() - c0, 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
