"""Tiny Hugging Face tokenizers and text towers built locally (no download), for tests.

Each `make_*_tokenizer` trains a small tokenizer with the Rust `tokenizers` library on a corpus,
wraps it in the `transformers` class the real model uses and saves it with `save_pretrained`, so
open_clip's `HFTokenizer(folder)` loads it exactly as it loads xlm-roberta-base or NLLB.
`make_hf_clip` builds an open_clip CustomTextCLIP whose text tower is an `HFTextEncoder` over a
random tiny `transformers` config saved in the same folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R / NLLB ids 0..4
TINY_VISION = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}


def make_xlmr_tokenizer(folder: Path, corpus: Iterable[str], vocab_size: int = 400) -> Path:
    """A sentencepiece-style Unigram tokenizer saved as an XLMRobertaTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>", shrinking_factor=0.9
    )
    tok.train_from_iterator(list(corpus), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    hf = XLMRobertaTokenizer(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    return folder


def make_nllb_tokenizer(folder: Path, corpus: Iterable[str], vocab_size: int = 400) -> Path:
    """A BPE tokenizer saved as an NllbTokenizer (with the 200 FAIRSEQ language codes)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import NllbTokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        list(corpus), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[:4])
    )
    data = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["merges"]]
    hf = NllbTokenizer(vocab=data["vocab"], merges=[tuple(m.split(" ")) for m in merges])
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    return folder


def make_bert_tokenizer(folder: Path, corpus: Iterable[str], vocab_size: int = 400) -> Path:
    """A WordPiece tokenizer saved as a BertTokenizer ([CLS] text [SEP], pad id 0)."""
    from transformers import BertTokenizer

    words = sorted({w for text in corpus for w in text.lower().split()})
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    vocab += [w for w in words if w not in vocab][: max(0, vocab_size - len(vocab))]
    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}).save_pretrained(folder)
    return folder


def hf_config(kind: str, vocab_size: int, **extra: Any) -> Any:
    """A random tiny `transformers` config: xlm-roberta, bert, m2m_100 (NLLB) or mt5."""
    import transformers

    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    if kind == "xlm-roberta":
        cfg = transformers.XLMRobertaConfig(
            vocab_size=vocab_size,
            num_hidden_layers=2,
            max_position_embeddings=80,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            **small,
        )
    elif kind == "bert":
        cfg = transformers.BertConfig(
            vocab_size=vocab_size, num_hidden_layers=2, max_position_embeddings=80, **small
        )
    elif kind == "m2m_100":
        cfg = transformers.M2M100Config(
            vocab_size=vocab_size,
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=80,
            pad_token_id=1,
            scale_embedding=True,
        )
    elif kind == "mt5":
        cfg = transformers.MT5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=1,
            num_heads=2,
            pad_token_id=0,
        )
    else:
        raise ValueError(kind)
    for key, value in extra.items():
        setattr(cfg, key, value)
    return cfg


def make_hf_clip(
    folder: Path,
    kind: str,
    *,
    pooler: str = "mean_pooler",
    proj: str = "mlp",
    embed_dim: int = 24,
    context_length: int = 32,
    seed: int = 0,
) -> tuple[Any, dict]:
    """A random CustomTextCLIP with an HF tower from the tokenizer already saved in `folder`.

    Returns (model in eval mode, model_cfg); `folder` then also holds the HF config.json.
    """
    import open_clip
    import torch
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(folder))
    hf_config(kind, vocab).save_pretrained(folder)
    model_cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": TINY_VISION,
        "text_cfg": {
            "hf_model_name": str(folder),
            "hf_tokenizer_name": str(folder),
            "hf_pooler_type": pooler,
            "hf_proj_type": proj,
            "hf_model_pretrained": False,
            "context_length": context_length,
        },
    }
    torch.manual_seed(seed)
    model = open_clip.model.CustomTextCLIP(**model_cfg).eval()
    return model, model_cfg
