"""The ONNX text encoder reproduces open_clip's encode_text, without torch at query time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.errors import ModelError
from imgsearch.textonnx import (
    GRAPH,
    MANIFEST,
    WEIGHTS,
    OnnxExportError,
    OnnxTextEncoder,
    export_text_encoder,
    exported,
)

REPO = Path(__file__).resolve().parents[1]
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
TEXTS = [
    "a dog on a beach",
    "A PHOTO OF A CAT!!!",
    "",
    "x",
    "sunset over the mountains, golden hour",
    "café crème brûlée 🐶🌊",
    "東京の夜景",
    "&amp; &lt;b&gt; html entities",
    "IMG_2041.JPG 2019-07-14",
    "a very long caption " + "with many many words " * 25,
    "two dogs   playing\tin the\nsnow",
    "don't stop me now",
]


def make_model(**text_overrides: object) -> tuple[object, object]:
    """A tiny random open_clip model (OpenAI-style QuickGELU) and the default CLIP tokenizer."""
    import open_clip
    import torch

    torch.manual_seed(0)
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["text_cfg"].update(text_overrides)
    custom = bool(text_overrides)
    cls = open_clip.model.CustomTextCLIP if custom else open_clip.model.CLIP
    model = cls(**cfg, quick_gelu=True).eval()
    return model, open_clip.get_tokenizer("ViT-B-32")


def torch_vectors(model: object, tokenizer: object, texts: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.encode_text(tokenizer(texts), normalize=True).numpy()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, Path]:
    model, tokenizer = make_model()
    folder = export_text_encoder(model, tokenizer, tmp_path_factory.mktemp("tiny") / "text")
    return model, tokenizer, folder


def test_embed_matches_torch(tiny: tuple[object, object, Path]) -> None:
    model, tokenizer, folder = tiny
    got = OnnxTextEncoder(folder).embed(TEXTS)
    ref = torch_vectors(model, tokenizer, TEXTS)
    assert got.dtype == np.float32 and got.shape == ref.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * ref).sum(axis=1).min() >= 0.999
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_top10_ranking_is_identical(tiny: tuple[object, object, Path]) -> None:
    model, tokenizer, folder = tiny
    rng = np.random.default_rng(0)
    library = rng.standard_normal((1000, 32)).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    got = OnnxTextEncoder(folder).embed(TEXTS) @ library.T
    ref = torch_vectors(model, tokenizer, TEXTS) @ library.T
    np.testing.assert_array_equal(np.argsort(-got)[:, :10], np.argsort(-ref)[:, :10])


def test_truncated_input_equals_full_context(tiny: tuple[object, object, Path]) -> None:
    _, _, folder = tiny
    encoder = OnnxTextEncoder(folder)
    rows = encoder.tokenizer.encode_batch(TEXTS[:6])
    full = encoder.tokenizer(TEXTS[:6])
    cut = full[:, : max(len(r) for r in rows)]
    assert cut.shape[1] < full.shape[1]
    run = encoder.session.run
    out_full = run(None, {"input_ids": full})[0]
    out_cut = run(None, {"input_ids": cut})[0]
    np.testing.assert_allclose(out_cut, out_full, atol=1e-5)


def test_graph_module_equals_encode_text() -> None:
    import torch

    from imgsearch.textgraph import text_graph as _text_graph

    model, tokenizer = make_model()
    graph, spec = _text_graph(model)
    ids = tokenizer(TEXTS)
    with torch.no_grad():
        ref = model.encode_text(ids)
        got = graph(ids[:, : int((ids != 0).sum(1).max())])
    assert spec["truncate"] and spec["dim"] == 32
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_query_path_does_not_import_torch(tiny: tuple[object, object, Path]) -> None:
    _, _, folder = tiny
    code = (
        "import sys; from imgsearch.textonnx import OnnxTextEncoder; "
        f"v = OnnxTextEncoder({str(folder)!r}).embed(['a dog on a beach']); "
        "assert v.shape == (1, 32), v.shape; "
        "heavy = {'torch', 'open_clip', 'onnx'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_partial_export_is_not_exported(tiny: tuple[object, object, Path], tmp_path: Path) -> None:
    _, _, folder = tiny
    assert exported(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert exported(copy)

    (copy / MANIFEST).unlink()  # interrupted before the manifest
    assert not exported(copy)
    with pytest.raises(ModelError, match="no complete text encoder export"):
        OnnxTextEncoder(copy)

    shutil.copy(folder / MANIFEST, copy / MANIFEST)
    with open(copy / WEIGHTS, "r+b") as fh:  # truncated weights
        fh.truncate(1000)
    assert not exported(copy)

    shutil.copytree(folder, copy, dirs_exist_ok=True)
    (copy / GRAPH).unlink()
    assert not exported(copy)

    shutil.copytree(folder, copy, dirs_exist_ok=True)
    (copy / MANIFEST).write_text("{not json", encoding="utf-8")
    assert not exported(copy)
    assert not exported(tmp_path / "missing")


def test_failed_self_check_leaves_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgsearch.textonnx as textonnx

    model, tokenizer = make_model()
    monkeypatch.setattr(textonnx, "MIN_COSINE", 1.01)  # no export can meet this
    with pytest.raises(OnnxExportError, match="disagrees with torch"):
        export_text_encoder(model, tokenizer, tmp_path / "text")
    assert not exported(tmp_path / "text")


def test_reexport_over_old_folder(tiny: tuple[object, object, Path], tmp_path: Path) -> None:
    model, tokenizer, folder = tiny
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    export_text_encoder(model, tokenizer, copy)
    assert exported(copy)
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in folder.iterdir())
    np.testing.assert_allclose(
        OnnxTextEncoder(copy).embed(TEXTS), OnnxTextEncoder(folder).embed(TEXTS), atol=1e-6
    )


def test_fp16_export_meets_fidelity_bar(tmp_path: Path) -> None:
    model, tokenizer = make_model()
    folder = export_text_encoder(model, tokenizer, tmp_path / "fp16", precision="fp16")
    encoder = OnnxTextEncoder(folder)
    assert encoder.precision == "fp16"
    got = encoder.embed(TEXTS)
    assert got.dtype == np.float32
    assert (got * torch_vectors(model, tokenizer, TEXTS)).sum(axis=1).min() >= 0.999


@pytest.mark.parametrize(
    "overrides",
    [{"no_causal_mask": True}, {"pool_type": "eos", "eos_id": 49407}],
    ids=["bidirectional", "eos-pool"],
)
def test_other_supported_text_towers(overrides: dict[str, object], tmp_path: Path) -> None:
    """MobileCLIP-style bidirectional towers (pads attended: no truncation) and eos pooling."""
    model, tokenizer = make_model(**overrides)
    encoder = OnnxTextEncoder(export_text_encoder(model, tokenizer, tmp_path / "text"))
    assert encoder.truncate is not overrides.get("no_causal_mask", False)
    got = encoder.embed(TEXTS)
    assert (got * torch_vectors(model, tokenizer, TEXTS)).sum(axis=1).min() >= 0.999


def test_unsupported_configs_raise_not_implemented(tmp_path: Path) -> None:
    model, tokenizer = make_model()
    with pytest.raises(NotImplementedError, match="SimpleTokenizer"):
        export_text_encoder(model, object(), tmp_path / "a")
    last_pool, _ = make_model(pool_type="none")
    with pytest.raises(NotImplementedError, match="pool_type"):
        export_text_encoder(last_pool, tokenizer, tmp_path / "b")
    with pytest.raises(ValueError, match="precision"):
        export_text_encoder(model, tokenizer, tmp_path / "c", precision="int4")
    assert not any(exported(tmp_path / d) for d in "abc")


def test_empty_batch(tiny: tuple[object, object, Path]) -> None:
    assert OnnxTextEncoder(tiny[2]).embed([]).shape == (0, 32)


@pytest.mark.slow
def test_vit_b_32_export_matches_torch(tmp_path: Path) -> None:
    """A full-size random ViT-B-32: the same costs and graph as real weights."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    folder = export_text_encoder(model.eval(), tokenizer, tmp_path / "text")
    got = OnnxTextEncoder(folder).embed(TEXTS)
    ref = torch_vectors(model, tokenizer, TEXTS)
    assert (got * ref).sum(axis=1).min() >= 0.999
    library = np.random.default_rng(0).standard_normal((1000, 512)).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    np.testing.assert_array_equal(
        np.argsort(-(got @ library.T))[:, :10], np.argsort(-(ref @ library.T))[:, :10]
    )
