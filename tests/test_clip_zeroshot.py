"""Label/template sets, the zero-shot classifier (vs open_clip's) and `imgsearch classify`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgsearch.clip import sets
from imgsearch.clip.zeroshot import classifier
from imgsearch.library import Library
from tests.support.shapes import CLASSES, caption, write_pictures


@pytest.fixture
def shapes_lib(run, trained_model, tmp_path, isolated_env):
    pictures = write_pictures(tmp_path / "shapes", per_class=3, seed=123)
    run("index", tmp_path / "shapes", "--model", trained_model, "-q")
    return pictures


def test_builtin_sets_reuse_open_clip_metadata():
    from open_clip import zero_shot_metadata as zsm

    assert sets.load_label_set("imagenet").names == list(zsm.IMAGENET_CLASSNAMES)
    assert sets.load_label_set("imagenet").exclusive
    for name, ref in (
        ("simple", zsm.SIMPLE_IMAGENET_TEMPLATES),
        ("openai", zsm.OPENAI_IMAGENET_TEMPLATES),
    ):
        ours = sets.load_template_set(name).templates
        assert [t.format("tabby cat") for t in ours] == [f("tabby cat") for f in ref]
    assert len(sets.load_template_set("openai").templates) == 80
    assert sets.load_template_set("photo").templates == ("a photo of a {}.",)
    everyday = sets.load_label_set("everyday")
    assert not everyday.exclusive and len(everyday.labels) > 150
    assert everyday.licence.startswith("CC0")
    assert {lab.group for lab in everyday.labels} >= {"scenes", "animals", "food", "documents"}


def test_user_sets_from_toml_and_text(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'exclusive = true\nlabels = ["cat", { name = "dog", aliases = ["puppy"] },'
        ' { name = "me", prompts = ["a selfie."] }]\n'
    )
    s = sets.load_label_set(str(toml))
    assert s.names == ["cat", "dog", "me"] and s.exclusive
    assert s.labels[1].texts(("a {}.",)) == ["a dog.", "a puppy."]
    assert s.labels[2].texts(("a {}.",)) == ["a selfie."]
    txt = tmp_path / "list.txt"
    txt.write_text("# my labels\nbeach | seaside\n\nmountain\n")
    s = sets.load_label_set(str(txt))
    assert s.names == ["beach", "mountain"] and s.labels[0].aliases == ("seaside",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("labels = [", "is not valid TOML"),
        ("labels = []", "holds no labels"),
        ('labels = ["a", "a"]', "names 'a' twice"),
        ("labels = [3]", "a label must be a string"),
        ('colour = "x"\nlabels = ["a"]', "unknown keys ['colour']"),
    ],
)
def test_bad_label_files_are_named_with_the_reason(run, tmp_path, content, message, tiny_model):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(sets.SetError, match="bad.toml"):
        sets.load_label_set(str(bad))
    with pytest.raises(sets.SetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sets.load_label_set(str(bad))


def test_unknown_set_message(run, shapes_lib):
    result = run("classify", shapes_lib[0][0], "--labels", "nosuch", code=1)
    assert "no label set 'nosuch'" in result.stderr and "everyday" in result.stderr


def test_classifier_matches_open_clip_build_zero_shot_classifier(shapes_lib, trained_model):
    import open_clip
    import torch

    with Library.open(_lib_path()) as lib:
        ours = classifier(lib, "imagenet", "simple")
        names = sets.load_label_set("imagenet").names
        model = open_clip.create_model_and_transforms(trained_model)[0].eval()
        tok = open_clip.get_tokenizer(trained_model)
        from open_clip import zero_shot_metadata as zsm

        with torch.no_grad():
            ref = open_clip.build_zero_shot_classifier(
                model, tok, names, zsm.SIMPLE_IMAGENET_TEMPLATES, num_classes_per_batch=100
            )
        assert ours.weights.shape == (1000, 64)
        assert np.abs(ours.weights - ref.T.numpy()).max() <= 1e-5
        assert ours.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()), rel=1e-6)
        cached = list((lib.path / "clip-cache").glob("*.npy"))
        assert len(cached) == 1
        again = classifier(lib, "imagenet", "simple", model=_no_embed(ours))
        assert np.array_equal(again.weights, ours.weights)  # from the cache, nothing embedded


def _lib_path():
    from imgsearch.config import resolve

    return resolve().library_path


def _no_embed(clf):
    from imgsearch.clip.zeroshot import TextModel, text_model

    with Library.open(_lib_path()) as lib:
        real = text_model(lib)

    def fail(texts):
        raise AssertionError("the cached classifier should not embed any text")

    return TextModel(fail, real.logit_scale, real.logit_bias, real.key)


def test_classify_top_label_and_probabilities(run, shapes_lib, tmp_path):
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(caption(c, s) for c, s in CLASSES))
    files = [p for p, _, _ in shapes_lib]
    out = json.loads(run("classify", *files, "--labels", labels, "-k", "3", "--json").stdout)
    assert [r["path"] for r in out] == [str(p) for p in files]
    right = sum(r["labels"][0]["label"] == caption(c, s) for r, (_, c, s) in zip(out, shapes_lib))
    assert right / len(files) >= 0.9
    for r in out:
        probs = [x["prob"] for x in r["labels"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    table = run("classify", files[0], "--labels", labels, "-k", "2").stdout
    assert table.splitlines()[0].split() == ["path", "#", "prob", "label"]
    assert len(table.splitlines()) == 3


def test_classify_a_file_outside_the_library(run, shapes_lib, tmp_path, trained_model):
    outside = write_pictures(tmp_path / "outside", per_class=1, seed=9)
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(caption(c, s) for c, s in CLASSES))
    files = [p for p, _, _ in outside]
    out = json.loads(run("classify", *files, "--labels", labels, "-k", "1", "--json").stdout)
    right = sum(r["labels"][0]["label"] == caption(c, s) for r, (_, c, s) in zip(out, outside))
    assert right / len(files) >= 0.8
    missing = run("classify", tmp_path / "nope.png", "--labels", labels, code=1)
    assert "no such file" in missing.stderr
