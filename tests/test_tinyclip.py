"""The tiny CLIP fixture must really tell colours and shapes apart, or search tests prove little."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from imgsearch.templates import ENSEMBLE, PHOTO
from tests.support import shapes, tinyclip

# Measured on held-out pictures: see tests/support/TINYCLIP.md. Chance is 0.05.
MIN_ACCURACY = 0.8


@pytest.fixture(scope="module")
def tiny_clip_dir(trained_model: str) -> Path:
    """The suite's session model (tests/conftest.py: train_tiny_clip, seed 0), so it trains once."""
    return Path(trained_model.removeprefix("local-dir:"))


def test_tiny_clip_is_a_loadable_zero_shot_classifier(tiny_clip_dir: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_clip_dir / tinyclip.CONFIG_NAME).read_text())
    assert config["model_cfg"] == tinyclip.MODEL_CFG
    assert (tiny_clip_dir / tinyclip.WEIGHTS_NAME).is_file()

    # Loaded the product's way, it keeps open_clip's standard tokenizer and preprocessing.
    name = f"local-dir:{tiny_clip_dir}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    pre = open_clip.get_model_preprocess_cfg(model)
    assert tuple(pre["mean"]) == OPENAI_DATASET_MEAN
    assert tuple(pre["std"]) == OPENAI_DATASET_STD
    assert tuple(pre["size"]) == (tinyclip.IMAGE_SIZE, tinyclip.IMAGE_SIZE)
    tokenizer = open_clip.get_tokenizer(name)
    assert isinstance(tokenizer, open_clip.SimpleTokenizer)
    assert tokenizer(["a red circle"]).shape == (1, tinyclip.CONTEXT_LENGTH)
    with torch.no_grad():
        text = model.encode_text(tokenizer(["a red circle"]), normalize=True)
    assert text.shape == (1, tinyclip.MODEL_CFG["embed_dim"])

    # Held-out pictures, written to disk as the product would index them.
    pictures = shapes.write_pictures(tmp_path / "held_out", per_class=8, seed=4242)
    accuracy = {
        "bare": tinyclip.zero_shot_accuracy(tiny_clip_dir, pictures, ("{}",)),
        "photo": tinyclip.zero_shot_accuracy(tiny_clip_dir, pictures, PHOTO),
        "ensemble": tinyclip.zero_shot_accuracy(tiny_clip_dir, pictures, ENSEMBLE),
        # One-attribute queries ("a circle", "red") must find that attribute too.
        "color": tinyclip.zero_shot_accuracy(tiny_clip_dir, pictures, PHOTO, by="color"),
        "shape": tinyclip.zero_shot_accuracy(tiny_clip_dir, pictures, PHOTO, by="shape"),
    }
    assert min(accuracy.values()) >= MIN_ACCURACY, accuracy


def test_cache_trains_once_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMGSEARCH_TEST_CACHE reuses a trained model, and a different seed is a different model."""
    calls: list[int] = []

    def fake_train(dest: Path, seed: int, cfg: tinyclip.TrainCfg, world=None) -> dict:
        calls.append(seed)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / tinyclip.CONFIG_NAME).write_text(json.dumps({"seed": seed}))
        (dest / tinyclip.WEIGHTS_NAME).write_bytes(b"weights")
        return {}

    monkeypatch.setattr(tinyclip, "_train", fake_train)
    monkeypatch.setenv(tinyclip.CACHE_ENV, str(tmp_path / "cache"))
    first = tinyclip.train_tiny_clip(tmp_path / "a", seed=0)
    second = tinyclip.train_tiny_clip(tmp_path / "b", seed=0)
    third = tinyclip.train_tiny_clip(tmp_path / "c", seed=1)
    assert calls == [0, 1]
    assert (first, second, third) == (tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert json.loads((second / tinyclip.CONFIG_NAME).read_text()) == {"seed": 0}
    assert json.loads((third / tinyclip.CONFIG_NAME).read_text()) == {"seed": 1}

    monkeypatch.delenv(tinyclip.CACHE_ENV)
    tinyclip.train_tiny_clip(tmp_path / "d", seed=0)
    assert calls == [0, 1, 0]  # without the cache, every session trains


@pytest.mark.slow
def test_training_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tinyclip.CACHE_ENV, raising=False)  # really train, twice
    first = tinyclip.train_tiny_clip(tmp_path / "one", seed=3)
    second = tinyclip.train_tiny_clip(tmp_path / "two", seed=3)
    weights = tinyclip.WEIGHTS_NAME
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
