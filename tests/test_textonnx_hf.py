"""Multilingual towers on the torch-free path: HF text towers, SigLIP pooling, manifest format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.textonnx import MANIFEST, OnnxTextEncoder, export_text_encoder, exported
from tests.support.hfmodels import (
    make_bert_tokenizer,
    make_hf_clip,
    make_nllb_tokenizer,
    make_xlmr_tokenizer,
)
from tests.test_hftokenizer import GOLDEN, TRAIN

REPO = Path(__file__).resolve().parents[1]


def torch_vectors(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.encode_text(tokenizer(texts), normalize=True).numpy()


def assert_matches_torch(encoder: OnnxTextEncoder, model, tokenizer, **embed) -> None:
    got = encoder.embed(GOLDEN, **embed)
    ref = torch_vectors(model, tokenizer, GOLDEN)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert (got * ref).sum(axis=1).min() >= 0.9999
    library = np.random.default_rng(1).standard_normal((500, ref.shape[1])).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    np.testing.assert_array_equal(
        np.argsort(-(got @ library.T))[:, :10], np.argsort(-(ref @ library.T))[:, :10]
    )


@pytest.mark.parametrize(
    ("kind", "make_tok", "pooler", "proj"),
    [
        ("xlm-roberta", make_xlmr_tokenizer, "mean_pooler", "mlp"),
        ("xlm-roberta", make_xlmr_tokenizer, "cls_last_hidden_state_pooler", "linear"),
        ("bert", make_bert_tokenizer, "cls_pooler", "linear"),
        ("m2m_100", make_nllb_tokenizer, "cls_pooler", "linear"),
        ("mt5", make_xlmr_tokenizer, "mean_pooler", "linear"),
    ],
    ids=["xlmr-mean-mlp", "xlmr-cls-linear", "bert-cls-pooler", "nllb-cls", "mt5-mean"],
)
def test_hf_tower_export_matches_torch(kind, make_tok, pooler, proj, tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    folder = make_tok(tmp_path / "hf", TRAIN)
    model, _ = make_hf_clip(folder, kind, pooler=pooler, proj=proj)
    tokenizer = HFTokenizer(str(folder), context_length=32)
    out = export_text_encoder(model, tokenizer, tmp_path / "text")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == 2 and manifest["tower"] == "hf"
    assert manifest["inputs"] == ["input_ids", "attention_mask"]
    assert manifest["tokenizer"]["kind"] == "hf" and manifest["tokenizer"]["context_length"] == 32
    assert manifest["min_probe_cosine"] >= 0.9999
    encoder = OnnxTextEncoder(out)
    assert encoder.truncate  # pads are masked: ids are cut to the longest real row
    assert_matches_torch(encoder, model, tokenizer)


def test_nllb_language_reaches_the_graph(tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    folder = make_nllb_tokenizer(tmp_path / "hf", TRAIN)
    model, _ = make_hf_clip(folder, "m2m_100", pooler="cls_pooler", proj="linear")
    tokenizer = HFTokenizer(str(folder), context_length=32)
    encoder = OnnxTextEncoder(export_text_encoder(model, tokenizer, tmp_path / "text"))
    assert encoder.takes_language
    english = encoder.embed(GOLDEN)
    tokenizer.tokenizer.src_lang = "kor_Hang"  # see test_hftokenizer: how transformers switches
    assert_matches_torch(encoder, model, tokenizer, lang="kor_Hang")
    assert (encoder.embed(GOLDEN, lang="kor_Hang") * english).sum(1).max() < 0.9999

    # The torch path (no export) applies the same language, and restores the default after.
    from imgsearch.encoder import Encoder
    from imgsearch.errors import ModelError
    from imgsearch.modelspec import ModelSpec, PreprocessSpec

    tokenizer.tokenizer.src_lang = "eng_Latn"
    pre = PreprocessSpec(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch_encoder = Encoder(model, tokenizer, ModelSpec("nllb-toy", "", 24, pre), "cpu")
    assert torch_encoder.takes_language
    korean = torch_encoder.embed_texts(GOLDEN, lang="kor_Hang")
    assert (korean * encoder.embed(GOLDEN, lang="kor_Hang")).sum(1).min() >= 0.9999
    assert (torch_encoder.embed_texts(GOLDEN) * english).sum(1).min() >= 0.9999
    with pytest.raises(ModelError, match="language code 'xx_Yyyy' is not known"):
        torch_encoder.embed_texts(["빨간 원"], lang="xx_Yyyy")


@pytest.mark.parametrize("pool", ["last", "first"])
def test_siglip_style_tower_with_hf_tokenizer(pool: str, tmp_path: Path) -> None:
    """SigLIP i18n: built-in bidirectional tower, pool 'last', an HF tokenizer, canonicalize."""
    import open_clip
    import torch
    from open_clip.tokenizer import HFTokenizer

    folder = make_xlmr_tokenizer(tmp_path / "hf", TRAIN)
    tokenizer = HFTokenizer(str(folder), context_length=16, clean="canonicalize")
    torch.manual_seed(0)
    text_cfg = {
        "context_length": 16,
        "vocab_size": len(tokenizer.tokenizer),
        "width": 32,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": pool,
    }
    model = open_clip.model.CustomTextCLIP(
        embed_dim=24,
        vision_cfg={"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        text_cfg=text_cfg,
    ).eval()
    out = export_text_encoder(model, tokenizer, tmp_path / "text")
    encoder = OnnxTextEncoder(out)
    assert not encoder.truncate and encoder.inputs == ["input_ids"]
    assert json.loads((out / MANIFEST).read_text())["pool"] == pool
    assert_matches_torch(encoder, model, tokenizer)


def test_format_1_export_keeps_loading(tmp_path: Path) -> None:
    """An export written before format 2 (CLIP BPE) loads and embeds the same."""
    from tests.test_textonnx import TEXTS, make_model

    model, tokenizer = make_model()
    folder = export_text_encoder(model, tokenizer, tmp_path / "v2")
    v1 = tmp_path / "v1"
    shutil.copytree(folder, v1)
    m = json.loads((v1 / MANIFEST).read_text())
    tok = m["tokenizer"]
    legacy = {  # exactly the keys format 1 wrote
        "format": 1,
        "precision": m["precision"],
        "files": m["files"],
        "dim": m["dim"],
        "truncate": m["truncate"],
        "pool": m["pool"],
        "context": m["context"],
        "tokenizer": {
            k: tok[k] for k in ("context_length", "clean", "special_tokens", "vocab_size")
        },
        "versions": m["versions"],
        "min_probe_cosine": m["min_probe_cosine"],
    }
    (v1 / MANIFEST).write_text(json.dumps(legacy, indent=2))
    assert exported(v1)
    np.testing.assert_array_equal(
        OnnxTextEncoder(v1).embed(TEXTS), OnnxTextEncoder(folder).embed(TEXTS)
    )
    (v1 / MANIFEST).write_text(json.dumps({**legacy, "format": 3}))
    assert not exported(v1)


def test_hf_query_path_does_not_import_torch(tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    folder = make_xlmr_tokenizer(tmp_path / "hf", TRAIN)
    model, _ = make_hf_clip(folder, "xlm-roberta")
    out = export_text_encoder(model, HFTokenizer(str(folder), context_length=32), tmp_path / "t")
    code = (
        "import sys; from imgsearch.textonnx import OnnxTextEncoder; "
        f"v = OnnxTextEncoder({str(out)!r}).embed(['빨간 원', 'a red circle']); "
        "assert v.shape == (2, 24), v.shape; "
        "heavy = {'torch', 'open_clip', 'transformers', 'onnx'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_half_precision_model_is_checked_against_fp32(tmp_path: Path) -> None:
    """A model indexed in fp16 (CUDA) exports fp32 ONNX, checked against an fp32 copy."""
    import torch
    from open_clip.tokenizer import HFTokenizer

    folder = make_xlmr_tokenizer(tmp_path / "hf", TRAIN)
    model, _ = make_hf_clip(folder, "xlm-roberta")
    tokenizer = HFTokenizer(str(folder), context_length=32)
    half = model.half()
    out = export_text_encoder(half, tokenizer, tmp_path / "text")
    assert all(p.dtype == torch.float16 for p in half.parameters())  # the live model is untouched
    assert half.visual is not None
    assert json.loads((out / MANIFEST).read_text())["min_probe_cosine"] >= 0.99999
    got = OnnxTextEncoder(out).embed(GOLDEN)
    ref = torch_vectors(model.float(), tokenizer, GOLDEN)
    assert (got * ref).sum(axis=1).min() >= 0.9999
