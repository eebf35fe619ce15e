"""A tiny real CLIP, trained inside the test suite on generated colour-shape pictures.

No pretrained weights can be downloaded in tests, yet search quality ("a blue square" finds blue
squares) can only be checked with a model that has learned something. So we train a 3.9M-parameter
open_clip CLIP (3.2M of it the 49408-row token table, of which 27 rows are used) with open_clip's
own ClipLoss for about 50 s of one CPU core, and save it in open_clip's `local-dir:` format so the
product loads it like any other model:

    <dir>/open_clip_config.json   {"model_cfg", "preprocess_cfg", "imgsearch_tinyclip"}
    <dir>/open_clip_model.safetensors

The text half is a parameter (`TextSide`): `ENGLISH` (open_clip's own text transformer and CLIP
BPE, the default) or another world's captions, tokenizer and text tower (tests/support/bilingual.py:
an XLM-R-like HF tower speaking English and Korean).

Set IMGSEARCH_TEST_CACHE to a directory to reuse a trained model across test sessions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from imgsearch.templates import ENSEMBLE, PHOTO

from . import shapes

CACHE_ENV = "IMGSEARCH_TEST_CACHE"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"

IMAGE_SIZE = 32
CONTEXT_LENGTH = 32  # every template + caption fits in 12 tokens; longer queries are truncated

MODEL_CFG: dict = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
        "width": 128,
        "head_width": 32,
        "layers": 3,
    },
    "text_cfg": {
        "context_length": CONTEXT_LENGTH,
        "vocab_size": 49408,  # SimpleTokenizer's vocabulary: open_clip's standard text path
        "width": 64,
        "heads": 2,
        "layers": 2,
    },
}

PREPROCESS_CFG: dict = {
    "size": IMAGE_SIZE,
    "mode": "RGB",
    "mean": list(OPENAI_DATASET_MEAN),
    "std": list(OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}


@dataclass(frozen=True)
class TrainCfg:
    """Training knobs; the defaults are what was measured (see TINYCLIP.md)."""

    steps: int = 600
    groups: int = 2  # each group holds the 20 classes once, so ClipLoss has no false negatives
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.05
    pool_per_class: int = 120  # pictures drawn per class before training, resampled every step
    draw_sizes: tuple[int, ...] = (48, 64, 96)
    partial_weight: float = 0.5  # weight of the colour-only and shape-only losses
    # One thread: on a busy 2-core machine (other tests, other jobs) a step took ~75 ms on one
    # thread but 0.6-2.4 s on two, whose OpenMP workers wait on each other. A fixed count also
    # keeps the weights bit-for-bit repeatable.
    threads: int = 1


DEFAULT_TRAIN = TrainCfg()


# Partial descriptions, so that queries naming one attribute ("a circle", or "red" as a negative
# term) land near the pictures that have it, not somewhere arbitrary.
COLOR_PHRASES = ("{}", "something {}", "a {} thing")
SHAPE_PHRASES = ("a {}", "{}")


def with_templates(bare: str) -> list[str]:
    """`bare`, then the product's PHOTO and ENSEMBLE prompts around it (no duplicates)."""
    out = [bare]
    for template in (*PHOTO, *ENSEMBLE):
        text = template.format(bare)
        if text not in out:
            out.append(text)
    return out


def caption_variants(color: str, shape: str) -> list[str]:
    """Captions a class is trained with: bare ("a red circle"), then its prompt forms."""
    return with_templates(shapes.caption(color, shape))


def color_variants(color: str) -> list[str]:
    """Colour-only captions ("red", "a photo of something red.", ...), COLOR_PHRASES-major."""
    return [text for phrase in COLOR_PHRASES for text in with_templates(phrase.format(color))]


def shape_variants(shape: str) -> list[str]:
    """Shape-only captions ("a circle", "a photo of circle.", ...), SHAPE_PHRASES-major."""
    return [text for phrase in SHAPE_PHRASES for text in with_templates(phrase.format(shape))]


Texts = tuple[list[str], torch.Tensor]  # caption variants and their sampling weights


@dataclass(frozen=True)
class TextSide:
    """The text half of a tiny CLIP: what captions it learns, how they are tokenized, its tower.

    `build(model_dir)` writes whatever the tokenizer / tower need into the model folder (an HF
    tokenizer and config) and returns (model_cfg, tokenizer). The caption functions return the
    variants of one class / colour / shape with their sampling weights (summing to 1).
    """

    name: str
    build: Callable[[Path], tuple[dict, Any]]
    class_texts: Callable[[str, str], Texts]
    color_texts: Callable[[str], Texts]
    shape_texts: Callable[[str], Texts]
    key_files: tuple[str, ...] = field(default=())  # sources that decide it, for the cache key


def cache_key(seed: int, cfg: TrainCfg = DEFAULT_TRAIN, world: TextSide | None = None) -> str:
    """Hash of everything that decides the trained weights, so a stale cache is never reused."""
    h = hashlib.sha256()
    extra = world.key_files if world is not None else ()
    for module_file in (__file__, shapes.__file__, *extra):
        h.update(Path(module_file).read_bytes())
    h.update(repr((PHOTO, ENSEMBLE, asdict(cfg), seed)).encode())
    h.update(f"open_clip={open_clip.__version__} torch={torch.__version__}".encode())
    return h.hexdigest()[:16]


def train_tiny_clip(dest_dir: Path, *, seed: int = 0, world: TextSide | None = None) -> Path:
    """Train (or fetch from IMGSEARCH_TEST_CACHE) the tiny CLIP into `dest_dir`; returns it.

    Load it with open_clip.create_model_and_transforms(f"local-dir:{dest_dir}").
    """
    world = world or ENGLISH
    dest_dir = Path(dest_dir)
    cache_root = os.environ.get(CACHE_ENV)
    if not cache_root:
        _train(dest_dir, seed, DEFAULT_TRAIN, world)
        return dest_dir

    cached = Path(cache_root) / f"{world.name}-{cache_key(seed, world=world)}"
    if not _is_model_dir(cached):
        Path(cache_root).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{world.name}-", dir=cache_root))
        try:
            _train(tmp, seed, DEFAULT_TRAIN, world)
            tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache should stay readable
            try:
                os.replace(tmp, cached)  # atomic: concurrent sessions never see half a model
            except OSError:
                if not _is_model_dir(cached):  # another session won the race otherwise
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for item in cached.iterdir():
        if item.is_file():
            shutil.copyfile(item, dest_dir / item.name)
    _relocate(dest_dir)
    return dest_dir


def _relocate(model_dir: Path) -> None:
    """Point an HF text tower's config at the folder it now lives in (open_clip wants a path)."""
    path = model_dir / CONFIG_NAME
    config = json.loads(path.read_text())
    text_cfg = config.get("model_cfg", {}).get("text_cfg", {})
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = str(model_dir.resolve())
        path.write_text(json.dumps(config, indent=2))


def _is_model_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Pin torch's thread count (speed and bit-for-bit repeatability), then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _eval_transform():
    return image_transform_v2(PreprocessCfg(**PREPROCESS_CFG), is_train=False)


def _picture_pool(seed: int, cfg: TrainCfg) -> torch.Tensor:
    """[20 classes, pool_per_class, 3, H, W]: pictures put through the product's preprocessing."""
    rng = random.Random(seed)
    transform = _eval_transform()
    per_class = []
    for color, shape in shapes.CLASSES:
        per_class.append(
            torch.stack(
                [
                    transform(
                        shapes.draw_shape(color, shape, size=rng.choice(cfg.draw_sizes), rng=rng)
                    )
                    for _ in range(cfg.pool_per_class)
                ]
            )
        )
    return torch.stack(per_class)


def _caption_tokens(
    world: TextSide, tokenizer: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens [n, variants, ctx] of the class, colour-only and shape-only captions."""
    full = torch.stack([tokenizer(world.class_texts(c, s)[0]) for c, s in shapes.CLASSES])
    color = torch.stack([tokenizer(world.color_texts(c)[0]) for c in shapes.COLORS])
    shape = torch.stack([tokenizer(world.shape_texts(s)[0]) for s in shapes.SHAPES])
    return full, color, shape


def _variant_weights(n_phrases: int) -> torch.Tensor:
    """Per phrase: bare 1/3, "a photo of {}." 1/3, the rest of the ensemble share the last third."""
    n_forms = len(with_templates("x"))
    w = torch.full((n_forms,), (1 / 3) / (n_forms - 2))
    w[0] = w[1] = 1 / 3
    return w.repeat(n_phrases) / n_phrases


def _english_build(model_dir: Path) -> tuple[dict, Any]:
    return MODEL_CFG, SimpleTokenizer(context_length=CONTEXT_LENGTH)


ENGLISH = TextSide(
    name="tinyclip",
    build=_english_build,
    class_texts=lambda c, s: (caption_variants(c, s), _variant_weights(1)),
    color_texts=lambda c: (color_variants(c), _variant_weights(len(COLOR_PHRASES))),
    shape_texts=lambda s: (shape_variants(s), _variant_weights(len(SHAPE_PHRASES))),
)


def _train(dest_dir: Path, seed: int, cfg: TrainCfg, world: TextSide | None = None) -> dict:
    """Train and save into `dest_dir`; returns measurements (seconds, params, final loss)."""
    world = world or ENGLISH
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _torch_threads(cfg.threads), torch.random.fork_rng(devices=[]):
        model_cfg, tokenizer = world.build(dest_dir)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        custom = "hf_model_name" in model_cfg["text_cfg"]  # as create_model decides
        model = (open_clip.CustomTextCLIP if custom else open_clip.CLIP)(**model_cfg)
        n_params = sum(p.numel() for p in model.parameters())

        pool = _picture_pool(seed, cfg)
        tokens, color_tokens, shape_tokens = _caption_tokens(world, tokenizer)
        t_data = time.perf_counter() - t_start

        # Train a compact token table holding only the rows the captions use: the full table's
        # dense gradient and AdamW update would cost a third of each step for rows that never
        # change. Sorted remapping keeps open_clip's argmax (EOT) pooling at the same position.
        # (open_clip's own text tower only; an HF tower's small trained vocabulary needs none.)
        full_embedding = getattr(model, "token_embedding", None)
        if full_embedding is not None:
            # torch.unique sorts, so the EOT id (the largest) stays the largest after remapping.
            used_ids = torch.unique(
                torch.cat([t.flatten() for t in (tokens, color_tokens, shape_tokens)])
            )
            lut = torch.zeros(full_embedding.num_embeddings, dtype=torch.long)
            lut[used_ids] = torch.arange(len(used_ids))
            compact = nn.Embedding(len(used_ids), full_embedding.embedding_dim)
            with torch.no_grad():
                compact.weight.copy_(full_embedding.weight[used_ids])
            model.token_embedding = compact
            tokens, color_tokens = lut[tokens], lut[color_tokens]
            shape_tokens = lut[shape_tokens]

        no_decay = {"positional_embedding", "class_embedding", "logit_scale", "token_embedding"}
        decay, other = [], []
        for name, p in model.named_parameters():
            skip = p.ndim < 2 or any(key in name for key in no_decay)
            (other if skip else decay).append(p)
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": other, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        loss_fn = open_clip.ClipLoss()
        n_classes, n_pool = pool.shape[:2]
        n_colors, n_shapes = len(shapes.COLORS), len(shapes.SHAPES)
        variant_w = world.class_texts(*shapes.CLASSES[0])[1]
        color_w = world.color_texts(next(iter(shapes.COLORS)))[1]
        shape_w = world.shape_texts(shapes.SHAPES[0])[1]
        class_idx = torch.arange(n_classes).repeat(cfg.groups)
        # Positions in a group of 20 (class k = colour * n_shapes + shape) that form a
        # shape-only batch (the 4 shapes of one colour) or a colour-only batch (5 colours of one
        # shape): every caption in such a batch matches exactly one picture, as ClipLoss assumes.
        shapes_of_color = torch.arange(n_colors)[:, None] * n_shapes + torch.arange(n_shapes)
        colors_of_shape = shapes_of_color.T
        model.train()
        loss_value = float("nan")
        for step in range(cfg.steps):
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
            if step >= cfg.warmup:
                progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
                lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
            for group in opt.param_groups:
                group["lr"] = lr

            pick = torch.randint(n_pool, (len(class_idx),), generator=gen)
            images = pool[class_idx, pick]
            flip = torch.rand(len(class_idx), generator=gen) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            variant = torch.multinomial(variant_w, len(class_idx), replacement=True, generator=gen)
            texts = [tokens[class_idx, variant]]
            subsets = []  # (image positions, text positions) of each partial batch
            n_texts = len(class_idx)
            for g in range(cfg.groups):
                base = g * n_classes
                color = int(torch.randint(n_colors, (1,), generator=gen))
                v = torch.multinomial(shape_w, n_shapes, replacement=True, generator=gen)
                texts.append(shape_tokens[torch.arange(n_shapes), v])
                subsets.append((base + shapes_of_color[color], n_texts + torch.arange(n_shapes)))
                n_texts += n_shapes
                shape = int(torch.randint(n_shapes, (1,), generator=gen))
                v = torch.multinomial(color_w, n_colors, replacement=True, generator=gen)
                texts.append(color_tokens[torch.arange(n_colors), v])
                subsets.append((base + colors_of_shape[shape], n_texts + torch.arange(n_colors)))
                n_texts += n_colors

            img_f = model.encode_image(images, normalize=True)
            txt_f = model.encode_text(torch.cat(texts), normalize=True)
            scale = model.logit_scale.exp()
            full = sum(
                loss_fn(img_f[g : g + n_classes], txt_f[g : g + n_classes], scale)
                for g in range(0, len(class_idx), n_classes)
            )
            partial = sum(loss_fn(img_f[i], txt_f[t], scale) for i, t in subsets)
            loss = (full + cfg.partial_weight * partial / 2) / cfg.groups
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            loss_value = loss.item()

        if full_embedding is not None:
            with torch.no_grad():
                full_embedding.weight[used_ids] = compact.weight
            model.token_embedding = full_embedding
        model.eval()
        _save(model, dest_dir, seed, cfg, model_cfg, world)
        _check_round_trip(model, dest_dir, world)
    seconds = time.perf_counter() - t_start
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_start,
        "data_seconds": t_data,
        "params": n_params,
        "final_loss": loss_value,
    }


def _save(
    model: nn.Module, dest_dir: Path, seed: int, cfg: TrainCfg, model_cfg: dict, world: TextSide
) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(dest_dir / WEIGHTS_NAME))
    info: dict = {"seed": seed, "train": asdict(cfg)}
    if world is not ENGLISH:
        info["world"] = world.name
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": PREPROCESS_CFG,
        # open_clip ignores this key; it tells a reader where the weights came from.
        "imgsearch_tinyclip": info,
    }
    (dest_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2))


def _check_round_trip(model: nn.Module, model_dir: Path, world: TextSide) -> None:
    """Fail loudly if open_clip's `local-dir:` loading gives other embeddings than we trained."""
    loaded, preprocess, tokenizer = load(model_dir)
    texts = tokenizer(world.class_texts("red", "circle")[0])
    picture = shapes.draw_shape("blue", "square", size=64, rng=random.Random(0))
    images = preprocess(picture).unsqueeze(0)
    with torch.no_grad():
        same = torch.allclose(
            model.encode_text(texts), loaded.encode_text(texts), atol=1e-6
        ) and torch.allclose(model.encode_image(images), loaded.encode_image(images), atol=1e-6)
    if not same:
        raise RuntimeError(f"{model_dir} does not load back to the trained tiny CLIP")


def load(model_dir: Path):
    """(model in eval mode, eval preprocess, tokenizer), loaded the way the product loads it."""
    name = f"local-dir:{Path(model_dir)}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


Picture = tuple[Path | Image.Image, str, str]


def zero_shot_accuracy(
    model_dir: Path,
    pictures: Sequence[Picture],
    templates: Sequence[str] = ("{}",),
    *,
    by: str = "class",
) -> float:
    """Top-1 accuracy of zero-shot classifying `pictures` (image or path, colour, shape).

    by="class": among the 20 captions ("a red circle"); "color": among the 5 colour names
    ("red"); "shape": among the 4 shapes ("a circle"). Each label's embedding is the
    renormalised mean over `templates`, the way the product averages a prompt ensemble.
    """
    if by == "class":
        labels = list(shapes.CLASSES)
        bare = [shapes.caption(c, s) for c, s in labels]
        truth = [labels.index((c, s)) for _, c, s in pictures]
    elif by == "color":
        bare = list(shapes.COLORS)
        truth = [bare.index(c) for _, c, _ in pictures]
    elif by == "shape":
        bare = [f"a {s}" for s in shapes.SHAPES]
        truth = [list(shapes.SHAPES).index(s) for _, _, s in pictures]
    else:
        raise ValueError(f"by must be 'class', 'color' or 'shape', not {by!r}")
    model, preprocess, tokenizer = load(model_dir)
    with _torch_threads(DEFAULT_TRAIN.threads), torch.no_grad():
        label_vecs = []
        for text in bare:
            emb = model.encode_text(tokenizer([t.format(text) for t in templates]), normalize=True)
            label_vecs.append(F.normalize(emb.mean(0), dim=-1))
        batch = torch.stack(
            [
                preprocess(p if isinstance(p, Image.Image) else Image.open(p).convert("RGB"))
                for p, _, _ in pictures
            ]
        )
        img = model.encode_image(batch, normalize=True)
        pred = (img @ torch.stack(label_vecs).T).argmax(-1)
    return float((pred == torch.tensor(truth)).float().mean())
