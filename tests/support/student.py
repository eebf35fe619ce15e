"""An M-CLIP-style text student (issue 13, section 4): Korean into the English tiny CLIP's space.

The teacher is the English tiny CLIP (tinyclip.ENGLISH). The student is a tiny XLM-R-like
HF text tower (the bilingual tokenizer, mean pooling, linear projection) trained so that both
a Korean caption and its English original land on the teacher's embedding of the English one
(M-CLIP: Carlsson et al. 2022). Pictures embedded by the teacher then answer Korean queries
without being embedded again. Only an experiment in the tests: not wired into the CLI.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import bilingual, shapes, tinyclip

HELD_OUT = "a blurry photo of {}."  # never trained on: agreement is measured with it


def parallel_captions() -> list[tuple[str, str]]:
    """(English, Korean) pairs of each class, same prompt template; HELD_OUT left out."""
    pairs: list[tuple[str, str]] = []
    for color, shape in shapes.CLASSES:
        en, _ = bilingual.class_texts(color, shape)
        half = len(en) // 2
        held = {HELD_OUT.format(shapes.caption(color, shape))}
        pairs += [(a, b) for a, b in zip(en[:half], en[half:]) if a not in held]
    return pairs


def train_student(teacher_dir: Path, folder: Path, *, steps: int = 400, seed: int = 0) -> Any:
    """Train the student in `folder` (tokenizer + config written there); returns (model, tok)."""
    import transformers
    from open_clip.hf_model import HFTextEncoder
    from open_clip.tokenizer import HFTokenizer

    teacher, _, teacher_tok = tinyclip.load(teacher_dir)
    pairs = parallel_captions()
    with tinyclip._torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            target = teacher.encode_text(teacher_tok([en for en, _ in pairs]), normalize=True)
        bilingual_tok = bilingual.make_xlmr_tokenizer(folder, bilingual.corpus(), vocab_size=300)
        tok = HFTokenizer(str(bilingual_tok), context_length=tinyclip.CONTEXT_LENGTH)
        config = transformers.XLMRobertaConfig(
            vocab_size=len(tok.tokenizer),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=tinyclip.CONTEXT_LENGTH + 8,
            pad_token_id=1,
            type_vocab_size=1,
        )
        config.save_pretrained(folder)
        student = HFTextEncoder(
            str(folder),
            output_dim=target.shape[1],
            proj_type="linear",
            pooler_type="mean_pooler",
            pretrained=False,
        )
        texts = [en for en, _ in pairs] + [ko for _, ko in pairs]
        ids = tok(texts)
        goal = torch.cat([target, target])
        opt = torch.optim.AdamW(student.parameters(), lr=2e-3, weight_decay=0.01)
        rng = random.Random(seed)
        student.train()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
            batch = rng.sample(range(len(texts)), 64)
            out = F.normalize(student(ids[batch]), dim=-1)
            loss = (1 - (out * goal[batch]).sum(-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        student.eval()
    return student, tok


def agreement(
    teacher_dir: Path, student: Any, tok: Any, per_class: int = 4, prompt: str = HELD_OUT
) -> dict[str, float]:
    """Student(Korean) vs teacher(English): text cosine, and top-k overlap over new pictures."""
    teacher, preprocess, teacher_tok = tinyclip.load(teacher_dir)
    rng = random.Random(99)
    pictures = [
        (c, s, preprocess(shapes.draw_shape(c, s, size=64, rng=rng)))
        for c, s in shapes.CLASSES
        for _ in range(per_class)
    ]
    en = [prompt.format(shapes.caption(c, s)) for c, s in shapes.CLASSES]
    ko = [prompt.format(bilingual.ko_caption(c, s)) for c, s in shapes.CLASSES]
    with torch.no_grad():
        images = teacher.encode_image(torch.stack([p for _, _, p in pictures]), normalize=True)
        t_en = teacher.encode_text(teacher_tok(en), normalize=True)
        s_ko = F.normalize(student(tok(ko)), dim=-1)
    top_t = (t_en @ images.T).topk(per_class, dim=1).indices
    top_s = (s_ko @ images.T).topk(per_class, dim=1).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) / per_class for a, b in zip(top_t, top_s)]
    right = [
        sum(pictures[i][:2] == shapes.CLASSES[k] for i in row.tolist()) / per_class
        for k, row in enumerate(top_s)
    ]
    return {
        "cosine_mean": float((s_ko * t_en).sum(-1).mean()),
        "cosine_min": float((s_ko * t_en).sum(-1).min()),
        "topk_overlap": sum(overlap) / len(overlap),
        "student_precision": sum(right) / len(right),
    }
