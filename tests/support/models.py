"""Tiny random-initialised open_clip models saved as `local-dir:` folders, for plumbing tests."""

from __future__ import annotations

import json
from pathlib import Path

TINY_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def make_random_model_dir(dest: Path, *, seed: int = 0) -> Path:
    """Write a fixed random tiny CLIP in open_clip's local-dir layout; return the folder."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_MODEL_CFG)
    dest.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (dest / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), dest / "open_clip_pytorch_model.bin")
    return dest
