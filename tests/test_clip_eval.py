"""`imgsearch eval`: the paper's figures, checked against open_clip run directly on the files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.support.cliplib import build_shapes_library, use_library

TEMPLATES = ("photo", "simple", "openai")


@pytest.fixture(scope="module")
def built(tmp_path_factory, session_cache, trained_model):
    root = tmp_path_factory.mktemp("eval")
    library, pictures = build_shapes_library(
        root, session_cache, trained_model, per_class=5, seed=2024
    )
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "class_index", "class_name"])
        for i, (p, c, s) in enumerate(pictures):
            w.writerow([p.name, i // 5, f"{c} {s}"])
    captions = root / "captions.tsv"
    captions.write_text("".join(f"{p.name}\ta {c} {s}\n" for p, c, s in pictures))
    return library, pictures, labels, captions


@pytest.fixture
def data(built, isolated_env):
    use_library(built[0], isolated_env)
    return built


@pytest.fixture(scope="module")
def direct(built, trained_model):
    """Image features computed by open_clip itself (its own preprocessing) on the same files."""
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(trained_model)
    model.eval()
    tok = open_clip.get_tokenizer(trained_model)
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p, _, _ in built[1]])
        images = model.encode_image(batch, normalize=True).numpy()
    return model, tok, images


def test_zeroshot_figures_equal_open_clip(run, data, direct, tmp_path):
    import open_clip
    import torch
    from open_clip import zero_shot_metadata as zsm

    _, pictures, labels, _ = data
    out = tmp_path / "zs.json"
    result = run("eval", "zeroshot", pictures[0][0].parent, "--labels", labels, "--out", out)
    assert result.stdout.splitlines()[1].split()[:4] == ["templates", "top1", "top5", "per-class"]
    got = json.loads(out.read_text())
    model, tok, images = direct
    names = list(dict.fromkeys(f"{c} {s}" for _, c, s in pictures))
    truth = torch.tensor([names.index(f"{c} {s}") for _, c, s in pictures])
    refs = {
        "photo": ("a photo of a {}.",),
        "simple": zsm.SIMPLE_IMAGENET_TEMPLATES,
        "openai": zsm.OPENAI_IMAGENET_TEMPLATES,
    }
    with torch.no_grad():
        for name in TEMPLATES:
            w = open_clip.build_zero_shot_classifier(model, tok, names, refs[name])
            logits = torch.from_numpy(images) @ w
            top5 = logits.topk(5, dim=1).indices
            top1 = (top5[:, 0] == truth).float()
            want = {
                "top1": float(top1.mean()),
                "top5": float((top5 == truth[:, None]).any(1).float().mean()),
                "mean_per_class": float(
                    np.mean([top1[truth == c].mean() for c in range(len(names))])
                ),
            }
            for key, value in want.items():
                got_value = got["templates"][name][key]  # float32 mean: equal to 1e-6
                assert got_value == pytest.approx(value, abs=1e-6), (name, key)
            gain = got["templates"][name]["top1"] - got["templates"]["photo"]["top1"]
            assert got["templates"][name]["gain_top1"] == pytest.approx(gain)


def test_retrieval_recalls_equal_open_clip(run, data, direct, tmp_path):
    import torch

    _, pictures, _, captions = data
    out = tmp_path / "r.json"
    run("eval", "retrieval", pictures[0][0].parent, "--captions", captions, "--out", out)
    got = json.loads(out.read_text())
    model, tok, images = direct
    for mode, prefix in (("plain", ""), ("prefix", "a photo of ")):
        captions = [f"{prefix}a {c} {s}" for _, c, s in pictures]
        unique = list(dict.fromkeys(captions))  # pictures share captions: those must tie
        with torch.no_grad():
            texts = model.encode_text(tok(unique), normalize=True).numpy()
        sim = (texts @ images.T)[[unique.index(c) for c in captions]]
        own = np.diag(sim)
        t2i = (sim > own[:, None]).sum(1)
        i2t = (sim > own[None, :]).sum(0)
        for k in (1, 5, 10):
            assert got[mode]["text_to_image"][f"R@{k}"] == pytest.approx((t2i < k).mean())
            assert got[mode]["image_to_text"][f"R@{k}"] == pytest.approx((i2t < k).mean())


def test_probe_equals_the_same_probe_on_open_clip_features(run, data, direct, tmp_path):
    from imgsearch.clip.evaluate import _probe_fit

    _, pictures, labels, _ = data
    out = tmp_path / "p.json"
    folder = pictures[0][0].parent
    result = run("eval", "probe", folder, "--labels", labels, "--shots", "1,2,4", "--out", out)
    got = json.loads(out.read_text())
    assert list(got["shots"]) == ["1", "2", "4"] and "zero-shot" in result.stdout
    _, _, images = direct
    names = list(dict.fromkeys(f"{c} {s}" for _, c, s in pictures))
    y = np.array([names.index(f"{c} {s}") for _, c, s in pictures])
    for k in (1, 2, 4):
        accs = []
        for seed in range(3):
            rng = np.random.default_rng([seed, k])
            train = np.concatenate(
                [rng.choice(np.flatnonzero(y == c), k, replace=False) for c in range(len(names))]
            )
            test = np.setdiff1d(np.arange(len(y)), train)
            pred = _probe_fit(images[train], y[train], k).predict(images[test])
            accs.append(float((pred == y[test]).mean()))
        assert got["shots"][str(k)]["probe"] == pytest.approx(np.mean(accs))
        assert 0.5 <= got["shots"][str(k)]["zeroshot"] <= 1.0


def test_eval_into_a_temporary_library(run, data, trained_model, tmp_path):
    _, pictures, _, _ = data
    sub = tmp_path / "few"
    sub.mkdir()
    for p, _, _ in pictures[::5]:
        (sub / p.name).write_bytes(p.read_bytes())
    rows = [f"{p.name},{c} {s}" for p, c, s in pictures[::5]]
    (tmp_path / "few.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    result = run(
        "eval", "zeroshot", sub, "--labels", tmp_path / "few.csv", "--model", trained_model,
        "--templates", "photo", "--json", "--out", tmp_path / "o.json",
    )  # fmt: skip
    assert json.loads(result.stdout)["images"] == 20


def test_bad_labels_file(run, data, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = run("eval", "zeroshot", data[1][0][0].parent, "--labels", bad, code=1)
    assert "bad.csv: needs a header with a file column" in result.stderr


def test_imagenet_csv_maps_to_open_clip_class_names(photos):
    from imgsearch.clip import evaluate
    from imgsearch.clip.sets import load_label_set

    csv_path = photos / "imagenet-500" / "labels.csv"
    imagenet = load_label_set("imagenet")
    rows = evaluate.read_labels(csv_path, csv_path.parent)
    mapped = evaluate.relabel_by_index(csv_path, rows, imagenet)
    assert len(mapped) == 500 and {label for _, label in mapped} <= set(imagenet.names)
    assert ("hammerhead shark" in {label for _, label in mapped}) and all(
        p.startswith(str(csv_path.parent)) for p, _ in mapped
    )
