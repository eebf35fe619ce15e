"""A bilingual toy world: the coloured shapes, captioned in English and Korean.

`BILINGUAL` is a `tinyclip.TextSide`: an XLM-R-like Hugging Face text tower (a `transformers`
XLMRobertaConfig with tiny sizes, built locally) and a sentencepiece-style Unigram tokenizer that
this module trains with `tokenizers` on the English and Korean captions ("a red circle" /
"빨간 원"). Both are saved into the model folder, which open_clip loads as `local-dir:` (its
`hf_model_name` points at the folder; `hf_model_pretrained` is false, the weights come from the
open_clip checkpoint). tinyclip.py's training loop trains it; each class is captioned half the
time in English, half in Korean, bare or inside the product's (English) prompt templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import shapes, tinyclip
from .hfmodels import make_xlmr_tokenizer

# Korean colour words: the adnominal form used before a noun, and the colour's noun.
KO_COLOR = {"red": "빨간", "green": "초록색", "blue": "파란", "yellow": "노란", "purple": "보라색"}
KO_COLOR_NOUN = {
    "red": "빨간색",
    "green": "초록색",
    "blue": "파란색",
    "yellow": "노란색",
    "purple": "보라색",
}
KO_SHAPE = {"circle": "원", "square": "사각형", "triangle": "삼각형", "star": "별"}
KO_COLOR_PHRASES = ("{noun}", "{adj} 것")  # "빨간색" (red), "빨간 것" (a red thing)
KO_SHAPE_PHRASES = ("{}", "{} 모양")  # "원" (circle), "원 모양" (circle shape)
HIDDEN = 64
TOKENIZER_VOCAB = 300


def ko_caption(color: str, shape: str) -> str:
    """The Korean bare caption of a class, e.g. "빨간 원" (a red circle)."""
    return f"{KO_COLOR[color]} {KO_SHAPE[shape]}"


def _both(english: list[str], korean: list[str], n_phrases_en: int, n_phrases_ko: int) -> Any:
    """English then Korean variants, each language weighted 1/2 as tinyclip weights English."""
    w = torch.cat(
        [tinyclip._variant_weights(n_phrases_en), tinyclip._variant_weights(n_phrases_ko)]
    )
    return english + korean, w / 2


def class_texts(color: str, shape: str) -> tinyclip.Texts:
    return _both(
        tinyclip.caption_variants(color, shape),
        tinyclip.with_templates(ko_caption(color, shape)),
        1,
        1,
    )


def color_texts(color: str) -> tinyclip.Texts:
    korean = [
        text
        for phrase in KO_COLOR_PHRASES
        for text in tinyclip.with_templates(
            phrase.format(noun=KO_COLOR_NOUN[color], adj=KO_COLOR[color])
        )
    ]
    return _both(
        tinyclip.color_variants(color),
        korean,
        len(tinyclip.COLOR_PHRASES),
        len(KO_COLOR_PHRASES),
    )


def shape_texts(shape: str) -> tinyclip.Texts:
    korean = [
        text
        for phrase in KO_SHAPE_PHRASES
        for text in tinyclip.with_templates(phrase.format(KO_SHAPE[shape]))
    ]
    return _both(
        tinyclip.shape_variants(shape),
        korean,
        len(tinyclip.SHAPE_PHRASES),
        len(KO_SHAPE_PHRASES),
    )


def corpus() -> list[str]:
    """Every caption the model is trained on: what the tokenizer is trained on."""
    texts: list[str] = []
    for color, shape in shapes.CLASSES:
        texts += class_texts(color, shape)[0]
    for color in shapes.COLORS:
        texts += color_texts(color)[0]
    for shape in shapes.SHAPES:
        texts += shape_texts(shape)[0]
    return texts


def build(model_dir: Path) -> tuple[dict, Any]:
    """Train and save the tokenizer and the tiny XLM-R config into `model_dir`."""
    import transformers
    from open_clip.tokenizer import HFTokenizer

    make_xlmr_tokenizer(model_dir, corpus(), vocab_size=TOKENIZER_VOCAB)
    tokenizer = HFTokenizer(str(model_dir), context_length=tinyclip.CONTEXT_LENGTH)
    transformers.XLMRobertaConfig(
        vocab_size=len(tokenizer.tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=tinyclip.CONTEXT_LENGTH + 8,  # positions start after pad id 1
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    ).save_pretrained(model_dir)
    model_cfg = {
        "embed_dim": tinyclip.MODEL_CFG["embed_dim"],
        "vision_cfg": tinyclip.MODEL_CFG["vision_cfg"],
        "text_cfg": {
            "hf_model_name": str(Path(model_dir).resolve()),
            "hf_tokenizer_name": str(Path(model_dir).resolve()),
            "hf_model_pretrained": False,
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": "linear",
            "context_length": tinyclip.CONTEXT_LENGTH,
        },
    }
    return model_cfg, tokenizer


BILINGUAL = tinyclip.TextSide(
    name="bilingual",
    build=build,
    class_texts=class_texts,
    color_texts=color_texts,
    shape_texts=shape_texts,
    key_files=(__file__, str(Path(__file__).with_name("hfmodels.py"))),
)


def train_bilingual_clip(dest_dir: Path, *, seed: int = 0) -> Path:
    """The bilingual tiny CLIP in `dest_dir` (cached like the English one); returns it."""
    return tinyclip.train_tiny_clip(dest_dir, seed=seed, world=BILINGUAL)
