"""imgsearch.duplicates on a small generated set: right groups, no chaining, keeper, no deletes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch import duplicates
from imgsearch.duplicates import DuplicateParams, ImageFacts, faiss_neighbours, find_groups


def scene(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A distinct picture: smooth random colour blobs (pHash needs structure, not noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def photo_set(tmp_path: Path) -> tuple[list[int], np.ndarray, dict[int, ImageFacts], dict]:
    """Family A: original + resized + q40 + crop + EXIF-rotated + grey; family B: original +
    byte copy; 4 distinct photos. Vectors: a family shares a direction (as CLIP would)."""
    rng = np.random.default_rng(0)
    paths, family = [], []

    def add(image: Image.Image, name: str, fam: int, **save: object) -> None:
        path = tmp_path / name
        image.save(path, **save)
        paths.append(path)
        family.append(fam)

    a = scene(1)
    add(a, "a.jpg", 0, quality=95)
    add(a.resize((80, 60)), "a_small.jpg", 0, quality=90)
    add(a, "a_q40.jpg", 0, quality=40)
    add(a.crop((4, 3, 156, 117)), "a_crop.jpg", 0, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated, shown upright
    add(a.transpose(Image.Transpose.ROTATE_90), "a_rot.jpg", 0, quality=90, exif=exif.tobytes())
    add(a.convert("L"), "a_grey.jpg", 0, quality=90)
    add(scene(2), "b.png", 1)
    shutil.copyfile(tmp_path / "b.png", tmp_path / "b_copy.png")
    paths.append(tmp_path / "b_copy.png")
    family.append(1)
    for n in range(4):
        add(scene(10 + n), f"other{n}.jpg", -1, quality=90)
    centres = unit(rng.normal(size=(2 + len(family), 64)))
    vectors = unit(np.stack([centres[f if f >= 0 else 2 + i] + rng.normal(0, 0.02, 64)
                             for i, f in enumerate(family)]))  # fmt: skip
    ids = [100 + i for i in range(len(paths))]
    facts = {}
    for i, path in zip(ids, paths):
        with Image.open(path) as im:
            w, h = im.size
        facts[i] = ImageFacts(str(path), path.stat().st_size, w, h)
    return ids, vectors, facts, dict(zip(ids, family))


def members(group: duplicates.DuplicateGroup) -> set[int]:
    return {m.id for m in group.members}


def test_near_finds_every_copy_of_a_picture_and_nothing_else(photo_set) -> None:
    ids, vectors, facts, family = photo_set
    before = {p: os.stat(p.path).st_mtime_ns for p in facts.values()}
    groups = find_groups(ids, vectors, faiss_neighbours(vectors), facts, "near")
    assert [members(g) for g in groups] == [
        {i for i in ids if family[i] == 0},
        {i for i in ids if family[i] == 1},
    ]
    a = groups[0]
    assert a.kind == "near" and facts[a.keeper].path.endswith("a.jpg")  # full size, largest file
    assert a.members[0].id == a.keeper
    for m in a.members:
        assert m.cosine is not None and m.cosine >= DuplicateParams().near_min_cosine
        assert m.hash_distance is not None and m.hash_distance <= DuplicateParams().near_max_hash
    assert {p: os.stat(p.path).st_mtime_ns for p in facts.values()} == before  # nothing touched
    assert all(os.path.exists(f.path) for f in facts.values())


def test_exact_groups_only_byte_identical_files(photo_set) -> None:
    ids, vectors, facts, family = photo_set
    groups = find_groups(ids, vectors, None, facts, "exact")
    assert len(groups) == 1
    assert {facts[i].path.rsplit("/", 1)[1] for i in members(groups[0])} == {"b.png", "b_copy.png"}
    assert all(m.hash_distance == 0 for m in groups[0].members)
    assert groups[0].to_dict()["members"][0].keys() == {
        "id",
        "path",
        "cosine",
        "hash_distance",
        "seconds_apart",
    }


def test_a_chain_of_look_alikes_does_not_become_one_group() -> None:
    """Photos 0-1-2-3-4 each match only their neighbours: groups are checked at the medoid."""
    n = 5
    ids = list(range(n))
    angle = np.linspace(0.0, 1.6, n)  # 0.4 rad apart: cos 0.92 to a neighbour, 0.70 two away
    vectors = unit(np.stack([np.cos(angle), np.sin(angle), np.zeros(n)], axis=1))
    facts = {i: ImageFacts(f"/x/{i}.jpg", 1000 + i, 100, 100) for i in ids}
    hashes = {i: (0, 0) for i in ids}
    params = DuplicateParams(near_min_cosine=0.9)
    groups = find_groups(ids, vectors, faiss_neighbours(vectors), facts, "near",
                         params=params, phash_fn=hashes.__getitem__)  # fmt: skip
    assert [members(g) for g in groups] == [{1, 2, 3}]  # medoid 2; 0 and 4 are too far from it
    assert groups[0].medoid == 2
    for g in groups:
        for m in g.members:
            assert float(vectors[g.medoid] @ vectors[m.id]) >= 0.9
    seen = [i for g in groups for i in members(g)]
    assert len(seen) == len(set(seen))  # each photo in one group at most


def test_keeper_resolution_then_size_then_exif_then_earliest() -> None:
    ids = [1, 2, 3, 4]
    vectors = unit(np.ones((4, 8)) + np.arange(4)[:, None] * 1e-3 * np.eye(8)[:4])
    hashes = {i: (0, 0) for i in ids}

    def keeper(**changes: dict[int, dict]) -> int:
        base = {i: dict(path=f"/p/{i}.jpg", size=500, width=100, height=100,
                        taken_at="2020-01-01T10:00:00", exif_fields=2) for i in ids}  # fmt: skip
        for i, fields in changes.items():
            base[int(i[1:])].update(fields)
        facts = {i: ImageFacts(**f) for i, f in base.items()}
        (group,) = find_groups(ids, vectors, faiss_neighbours(vectors), facts, "near",
                               phash_fn=hashes.__getitem__)  # fmt: skip
        return group.keeper

    assert keeper(i3={"width": 200}, i2={"size": 9000}) == 3  # resolution first
    assert keeper(i2={"size": 9000}, i4={"exif_fields": 9}) == 2  # then file size
    assert keeper(i4={"exif_fields": 9}, i1={"taken_at": "2019-01-01T00:00:00"}) == 4
    assert keeper(i1={"taken_at": "2021-01-01T00:00:00"}, i3={"taken_at": None}) == 2  # earliest


def test_similar_groups_bursts_of_one_camera_within_seconds() -> None:
    ids = list(range(6))
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=32))
    vectors = unit(np.stack([base + rng.normal(0, 0.05, 32) for _ in ids]))
    times = ["2021-05-01T12:00:00", "2021-05-01T12:00:02", "2021-05-01T12:00:05.500",
             "2021-05-01T12:00:40", "2021-05-01T12:00:03", "2021-05-01T12:00:01"]  # fmt: skip
    cameras = ["Pixel 7"] * 4 + ["iPhone 13", None]
    facts = {i: ImageFacts(f"/b/{i}.jpg", 100 + i, 10, 10, times[i], cameras[i]) for i in ids}
    (group,) = find_groups(ids, vectors, None, facts, "similar")
    assert members(group) == {0, 1, 2}  # 3 is 35 s later; 4 another camera; 5 no camera
    assert {m.id: m.seconds_apart for m in group.members}[group.medoid] == 0.0
    assert max(m.seconds_apart for m in group.members) <= 10.0


def test_unreadable_files_are_never_near_duplicates(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    assert duplicates.perceptual_hash(str(bad)) is None
    assert duplicates.content_hash(str(tmp_path / "missing.jpg")) is None
    good = tmp_path / "good.jpg"
    scene(5).save(good)
    shutil.copyfile(good, tmp_path / "bad2.jpg")
    bad.write_bytes(b"x" * 10)
    ids = [1, 2]
    vectors = unit(np.ones((2, 4)))
    facts = {1: ImageFacts(str(good), 10), 2: ImageFacts(str(bad), 10)}
    assert find_groups(ids, vectors, faiss_neighbours(vectors), facts, "near") == []


def test_bad_arguments_are_bugs() -> None:
    with pytest.raises(ValueError, match="kind must be one of exact, near, similar"):
        find_groups([], np.zeros((0, 4), np.float32), None, {}, "fuzzy")
    with pytest.raises(ValueError, match="needs neighbours_fn"):
        find_groups([1], np.ones((1, 4), np.float32), None, {1: ImageFacts("/a", 1)}, "near")


def test_hash_bands_find_copies_clip_puts_far_apart(photo_set) -> None:
    """A grey copy whose vector is not among the original's neighbours: found only when the
    stored perceptual hashes also propose candidates."""
    ids, vectors, facts, family = photo_set
    grey = next(i for i in ids if facts[i].path.endswith("a_grey.jpg"))
    moved = vectors.copy()
    other = next(i for i in ids if facts[i].path.endswith("other0.jpg"))
    moved[ids.index(grey)] = moved[ids.index(other)]  # CLIP's nearest is now a distinct photo
    params = DuplicateParams(near_min_cosine=-1.0, neighbours=1, hash_candidates=False)
    plain = find_groups(ids, moved, faiss_neighbours(moved), facts, "near", params=params)
    assert all(grey not in members(g) for g in plain)
    banded = find_groups(ids, moved, faiss_neighbours(moved), facts, "near",
                         params=DuplicateParams(near_min_cosine=-1.0, neighbours=1,
                                                hash_candidates=True))  # fmt: skip
    assert grey in members(banded[0]) and members(banded[0]) <= {i for i in ids if family[i] == 0}


def test_large_libraries_search_a_projection_and_still_find_copies() -> None:
    """Above FLAT_MAX, neighbours come from an IVF over a PCA projection, re-scored exactly."""
    rng = np.random.default_rng(2)
    n = duplicates.FLAT_MAX + 1000
    vectors = unit(rng.normal(size=(n, 128)))
    copies = rng.choice(n, 50, replace=False)
    vectors[:50] = unit(vectors[copies] + rng.normal(0, 0.01, (50, 128)))  # 50 planted copies
    scores, rows = duplicates.faiss_neighbours(vectors)(vectors[:50], 3)
    found = [copies[i] in rows[i] or copies[i] == i for i in range(50)]
    assert np.mean(found) >= 0.95
    hit = rows[:, 1] >= 0
    exact = np.einsum("nd,nd->n", vectors[:50][hit], vectors[rows[hit, 1]])
    assert np.allclose(scores[hit, 1], exact, atol=1e-5)  # full-vector cosines, not PCA ones


def _planted(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[int, tuple]]:
    """Row ids (not 0..n-1), vectors with 100 families of 2-3 copies, hashes that confirm them."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.normal(size=(n, dim)))
    hashes = {r: (int(h), int(h)) for r, h in enumerate(rng.integers(0, 2**62, n))}
    for f in range(100):
        base = 3 * f
        for j in (1, 2)[: 1 + f % 2]:
            vectors[base + j] = unit(vectors[base] + rng.normal(0, 0.05 / np.sqrt(dim), dim))
            hashes[base + j] = (hashes[base][0] ^ (1 << j), hashes[base][1])
    ids = 1000 + 7 * np.arange(n, dtype=np.int64)
    return ids, vectors, {int(ids[r]): h for r, h in hashes.items()}


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_neighbours_from_the_library_index_give_the_exact_search_groups(kind) -> None:
    """The library's own ANN index (exact or IVF-SQ8) in place of a FAISS index built for the
    command: the same groups as exact search, exact cosines in the evidence."""
    from imgsearch.vectors import IndexParams, build

    ids, vectors, hashes = _planted(6000, 64, seed=3)
    params = IndexParams(exact_max=100_000 if kind == "flat" else 1000)
    index = build([(ids, vectors)], dim=64, params=params)
    assert index.kind == kind
    facts = {int(i): ImageFacts(path=f"/p/{i}.jpg", size=int(i)) for i in ids}
    order = [int(i) for i in ids]

    def groups(neighbours):
        found = find_groups(order, vectors, neighbours, facts, "near",
                            params=DuplicateParams(hash_candidates=False),
                            phash_fn=hashes.__getitem__)  # fmt: skip
        return [(g.medoid, g.keeper, [(m.id, m.cosine) for m in g.members]) for g in found]

    exact = groups(faiss_neighbours(vectors))
    assert len(exact) == 100
    assert groups(duplicates.index_neighbours(index, ids, vectors)) == exact


def test_neighbours_from_the_library_index_stay_inside_the_folder() -> None:
    """--in FOLDER: the index holds the whole library; only the folder's photos come back."""
    from imgsearch.vectors import IndexParams, build

    ids, vectors, _ = _planted(6000, 64, seed=4)
    index = build([(ids, vectors)], dim=64, params=IndexParams(exact_max=1000))
    inside = np.arange(0, 6000, 2)  # every other photo: family members fall outside
    search = duplicates.index_neighbours(index, ids[inside], vectors[inside])
    scores, rows = search(vectors[inside], 5)
    assert rows.min() >= -1 and rows.max() < len(inside)
    assert (rows[:, 0] == np.arange(len(inside))).mean() > 0.99  # itself, first
    assert np.all(np.isneginf(scores[rows < 0]))


def test_a_crop_matches_one_of_its_originals_windows(tmp_path: Path) -> None:
    """5% crops at any offset: the crop's full hash is within a few bits of one of the
    original's 3x3 window hashes (the full hashes alone are far apart), and the hash bands
    propose the pair although CLIP puts the crop elsewhere."""
    from imgsearch.photohash import hash_distance, perceptual_hash

    original = scene(7, (400, 300))
    original.save(tmp_path / "o.jpg", quality=95)
    paths = [tmp_path / "o.jpg"]
    for n, (ox, oy) in enumerate([(0, 0), (20, 15), (9, 4), (20, 0)]):
        original.crop((ox, oy, ox + 380, oy + 285)).save(tmp_path / f"c{n}.jpg", quality=90)
        paths.append(tmp_path / f"c{n}.jpg")
    hashes = [perceptual_hash(str(p)) for p in paths]
    for h in hashes[1:]:
        assert hash_distance(hashes[0], h) <= 6
        assert hash_distance(hashes[0][:1], h[:1]) > hash_distance(hashes[0], h)
    others = [scene(100 + n, (400, 300)) for n in range(6)]
    for n, im in enumerate(others):
        im.save(tmp_path / f"x{n}.jpg", quality=90)
    paths += [tmp_path / f"x{n}.jpg" for n in range(6)]
    ids = list(range(len(paths)))
    facts = {i: ImageFacts(str(p), p.stat().st_size) for i, p in zip(ids, paths)}
    vectors = unit(np.random.default_rng(0).normal(size=(len(ids), 32)))  # CLIP: no help
    params = DuplicateParams(near_min_cosine=-1.0, neighbours=1, near_max_hash=8)
    groups = find_groups(ids, vectors, faiss_neighbours(vectors), facts, "near", params=params)
    assert [members(g) for g in groups] == [{0, 1, 2, 3, 4}]


def test_the_hash_is_the_thumbnail_dct_that_stored_hashes_were_made_with() -> None:
    """Libraries store pHashes: the folded products must give the bits of the method they
    were made with (each window resampled to 32x32, then its 8x8 low DCT against the median)."""
    from imgsearch import photohash as ph

    for seed, size in [(1, (160, 120)), (2, (400, 300)), (3, (97, 640)), (4, (1024, 768))]:
        grey = scene(seed, size).convert("L")
        if min(grey.size) // ph._BASE > 1:
            grey = grey.reduce(min(grey.size) // ph._BASE)
        base = np.asarray(grey.resize((ph._BASE,) * 2, Image.Resampling.LANCZOS), np.float64)
        small = ph._ROWS_Y @ base @ ph._ROWS_X.transpose(0, 2, 1)  # (hashes, 32, 32)
        low = (ph._DCT @ small @ ph._DCT.T).reshape(len(small), -1)
        bits = low > np.median(low, axis=1, keepdims=True)
        want = tuple(int("".join("1" if b else "0" for b in row), 2) for row in bits)
        assert ph.picture_hash(scene(seed, size)) == want
