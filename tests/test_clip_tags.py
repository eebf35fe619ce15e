"""`imgsearch tag` / `tags`: zero-shot tags from the stored vectors, kept in SQLite."""

from __future__ import annotations

import json

import pytest

from imgsearch.clip import tags
from imgsearch.library import Library
from tests.support.cliplib import build_shapes_library, use_library
from tests.support.shapes import CLASSES, COLORS, SHAPES, caption, write_pictures

ABSENT = ("dog", "a car", "orange", "hexagon")  # words the tiny model never saw on a picture


@pytest.fixture(scope="module")
def built(tmp_path_factory, session_cache, trained_model):
    root = tmp_path_factory.mktemp("tags")
    return build_shapes_library(root, session_cache, trained_model, per_class=8, seed=77)


@pytest.fixture
def shapes(built, isolated_env):
    use_library(built[0], isolated_env)
    return built[1]


def multi_label_file(tmp_path):
    path = tmp_path / "attributes.toml"
    shapes_part = ", ".join(
        f'{{ name = "{s}", prompts = ["a {s}", "a photo of a {s}."] }}' for s in SHAPES
    )
    path.write_text(
        "exclusive = false\n[groups]\n"
        f"colour = {json.dumps(list(COLORS))}\nshape = [{shapes_part}]\n"
        f"absent = {json.dumps(list(ABSENT))}\n"
    )
    return path


def stored_tags(isolated_env) -> set[tuple[str, str]]:
    with Library.open(isolated_env) as lib:
        files = lib.known_files()
        return {(f.path, t["tag"]) for f in files.values() for t in tags.tags_of(lib, f.id)}


def test_multi_label_tags_are_calibrated_per_label(run, shapes, tmp_path, isolated_env):
    result = run("tag", "--labels", multi_label_file(tmp_path))
    assert f"of {len(shapes)} photos with set attributes" in result.stderr
    got = stored_tags(isolated_env)
    truth = {(str(p), c) for p, c, _ in shapes} | {(str(p), s) for p, _, s in shapes}
    tp = len(got & truth)
    precision, recall = tp / len(got), tp / len(truth)
    print(f"multi-label tags: precision {precision:.3f} recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.6  # measured 1.000 / 0.766
    assert not {t for _, t in got} & set(ABSENT)  # a label no photo shows tags nothing
    listed = json.loads(run("tags", "--json").stdout)
    assert {r["set"] for r in listed} == {"attributes"}
    assert sum(r["photos"] for r in listed) == len(got)
    assert listed == sorted(listed, key=lambda r: -r["photos"])


def test_exclusive_set_gives_one_confident_label(run, shapes, tmp_path, isolated_env):
    classes = tmp_path / "classes.toml"
    classes.write_text(f"exclusive = true\nlabels = {json.dumps([caption(*c) for c in CLASSES])}\n")
    run("tag", "--labels", classes)
    with Library.open(isolated_env) as lib:
        per_photo = {f.path: tags.tags_of(lib, f.id) for f in lib.known_files().values()}
        assert all(len(t) <= 1 for t in per_photo.values())
        tagged = {p: t[0] for p, t in per_photo.items() if t}
        assert len(tagged) >= 0.9 * len(shapes)
        right = sum(
            tagged[str(p)]["tag"] == caption(c, s) for p, c, s in shapes if str(p) in tagged
        )
        assert right / len(tagged) >= 0.95
        assert all(0.5 <= t["prob"] <= 1.0 for t in tagged.values())  # twice the runner-up
        ids = tags.ids_with_tag(lib, "a red circle")
        paths = {i.path for i in lib.info(ids).values()}
        assert paths and all("red_circle" in p for p in paths)
        assert len(tags.ids_with_tag(lib, "classes/a red circle")) == len(ids)
        assert len(tags.ids_with_tag(lib, "no such tag")) == 0


def test_new_photos_are_tagged_like_the_library(run, shapes, tmp_path, isolated_env):
    run("tag", "--labels", multi_label_file(tmp_path))
    before = stored_tags(isolated_env)
    new = write_pictures(tmp_path / "new", per_class=1, seed=5)
    run("index", tmp_path / "new", "-q")  # index tags new photos for the applied sets
    after = stored_tags(isolated_env)
    with Library.open(isolated_env) as lib:
        ids = [lib.known_files()[str(p)].id for p, _, _ in new]
        added = tags.tag_new(lib, ids)  # tagging them again gives the same tags
    assert stored_tags(isolated_env) == after
    assert after >= before and len(after) - len(before) == added > 0
    fresh = {(p, t) for p, t in after if "/new/" in p}
    right = {(str(p), c) for p, c, _ in new} | {(str(p), s) for p, _, s in new}
    assert len(fresh & right) / len(fresh) >= 0.95


def test_remove_a_set(run, shapes, tmp_path, isolated_env):
    run("tag", "--labels", multi_label_file(tmp_path))
    assert "removed label set attributes" in run("tag", "--remove", "attributes").stderr
    assert stored_tags(isolated_env) == set()
    assert run("tags", "--json").stdout.strip() == "[]"
    result = run("tag", "--remove", "attributes", code=1)
    assert "was not applied" in result.stderr and "applied: none" in result.stderr


def test_tag_needs_labels_or_remove(run, shapes):
    assert "give either --labels SET or --remove SET" in run("tag", code=2).stderr


@pytest.mark.parametrize("args", [["tags"], ["album", "list"], ["classify", "--help"]])
def test_listing_needs_neither_torch_nor_sqlalchemy(args, shapes, isolated_env):
    import subprocess
    import sys

    from tests.test_lazy_imports import PROBE

    code = PROBE.format(
        args=args + (["--library", str(isolated_env)] if "--help" not in args else [])
    )
    code += "print(sorted(m for m in ('sqlalchemy', 'sklearn') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "0 []" and second == "[]", out.stdout + out.stderr


def test_a_moved_label_file_does_not_stop_indexing(run, shapes, tmp_path, isolated_env):
    labels = multi_label_file(tmp_path)
    run("tag", "--labels", labels)
    labels.unlink()
    with Library.open(isolated_env) as lib:
        some = [f.id for f in list(lib.known_files().values())[:3]]
        assert tags.tag_new(lib, some) == 0


def test_tag_and_album_filters_narrow_queries(run, shapes, tmp_path, isolated_env):
    run("tag", "--labels", multi_label_file(tmp_path))
    tagged = {p for p, t in stored_tags(isolated_env) if t == "circle"}
    found = json.loads(run("query", "a picture", "tag:circle", "-k", "500", "--json").stdout)
    assert {h["path"] for h in found} == tagged and len(tagged) > 0
    others = json.loads(run("query", "a picture", "-tag:circle", "-k", "500", "--json").stdout)
    assert not {h["path"] for h in others} & tagged
    listed = json.loads(run("query", "tag:circle|star", "-k", "500", "--json").stdout)
    assert {h["path"] for h in listed} >= tagged and all(h["score"] is None for h in listed)
    run("album", "create", "reds", "--text", "a red shape")
    with Library.open(isolated_env) as lib:
        from imgsearch.clip import albumstore

        members = {p for _, p, _ in albumstore.members(lib, "reds")}
    inside = json.loads(run("query", "album:reds", "-k", "500", "--json").stdout)
    assert {h["path"] for h in inside} == members and members
