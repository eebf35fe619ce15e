"""Model loading: names, tags, files and schemas, and one clear error for each failure."""

from __future__ import annotations

import time

import pytest
import torch

from imgsearch.encoder import load_encoder, normalize_model
from imgsearch.errors import ModelError


def test_offline_download_fails_fast_with_the_way_out(run, pictures):
    start = time.perf_counter()
    result = run(
        "index",
        pictures[0].parent,
        "--model",
        "ViT-B-32",
        "--pretrained",
        "laion2b_s34b_b79k",
        code=1,
    )
    assert time.perf_counter() - start < 30
    err = result.stderr
    assert "ViT-B-32 / laion2b_s34b_b79k" in err and "network access" in err
    assert "--pretrained /path/to/" in err and "local-dir:" in err
    assert len(err.strip().splitlines()) <= 2  # the "loading" line and one paragraph
    # nothing was stored, and the library this run created is not left behind (issue 8)
    assert "no library at" in run("stats", code=1).stderr


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'ViT-Q-99'"):
        load_encoder("ViT-Q-99", "none")


def test_unknown_pretrained_tag_lists_known_ones():
    with pytest.raises(ModelError, match="no pretrained weights tagged 'lion'.*laion2b_s34b_b79k"):
        load_encoder("ViT-B-32", "lion")


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(
        ModelError,
        match=r"checkpoint file .*nope\.safetensors \(from --pretrained\) does not exist",
    ):
        normalize_model("ViT-B-32", str(tmp_path / "nope.safetensors"))


def test_missing_local_dir(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        normalize_model(f"local-dir:{tmp_path / 'none'}", "")


def test_local_checkpoint_file_loads_those_weights(tmp_path, tiny_model):
    import open_clip

    from tests.support.models import TINY_MODEL_CFG

    open_clip.factory._MODEL_CONFIGS["imgsearch-test-tiny"] = dict(TINY_MODEL_CFG)
    torch.manual_seed(5)
    model = open_clip.create_model("imgsearch-test-tiny")
    ckpt = tmp_path / "weights.pt"
    torch.save(model.state_dict(), ckpt)
    enc = load_encoder("imgsearch-test-tiny", str(ckpt), "cpu")
    assert enc.spec.pretrained == str(ckpt) and enc.dim == 32
    tokens = open_clip.get_tokenizer("imgsearch-test-tiny")(["a dog"])
    with torch.no_grad():
        want = model.encode_text(tokens)[0]
    want = want / want.norm()
    got = enc.embed_texts(["a dog"])[0]
    assert float(torch.from_numpy(got) @ want) == pytest.approx(1.0, abs=1e-5)


def test_random_weights_are_the_same_in_every_load(tiny_model):
    from imgsearch.encoder import _load

    _load.cache_clear()
    a = load_encoder(tiny_model, "").embed_texts(["x"])
    _load.cache_clear()
    b = load_encoder(tiny_model, "").embed_texts(["x"])
    assert float((a * b).sum()) == pytest.approx(1.0, abs=1e-6)


def test_cpu_device_and_bad_device():
    with pytest.raises(ModelError, match="unknown device 'gpu0'"):
        load_encoder("ViT-B-32", "none", "gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            load_encoder("ViT-B-32", "none", "cuda")


def test_embed_pixels_takes_numpy_or_tensor(tiny_model):
    import numpy as np

    enc = load_encoder(tiny_model, "")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    a = enc.embed_pixels(pixels)
    b = enc.embed_pixels(torch.from_numpy(pixels))
    assert a.shape == (3, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_offline_message_keeps_whole_words():
    from imgsearch.encoder import _offline_message

    words = [f"word{i:03d}" for i in range(80)]
    cause = OSError(" ".join(words) + "\nsecond line")
    text = _offline_message("ViT-B-32 / laion2b_s34b_b79k", cause)
    quoted = text.split("(OSError: ", 1)[1].split("). Offline", 1)[0]
    shown = quoted.removesuffix(" ...").split()
    assert shown == words[: len(shown)] and 0 < len(shown) < len(words)
    assert quoted.endswith(" ...") and "second line" not in text


def test_empty_pretrained_is_named():
    from imgsearch.encoder import normalize_model
    from imgsearch.errors import ModelError

    for empty in ("", "  "):
        with pytest.raises(ModelError, match="pretrained setting is empty"):
            normalize_model("ViT-B-32", empty)


def test_checking_a_known_model_name_imports_nothing_heavy():
    """`index` checks the name before it creates a library; decoding must not wait for torch."""
    import subprocess
    import sys

    code = (
        "import sys; from imgsearch.encoder import check_model_name; "
        "check_model_name('ViT-B-32', 'laion2b_s34b_b79k'); "
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
