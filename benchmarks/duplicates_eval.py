"""Near-duplicate finding, measured (issue 10 §4): quality on copies of real photos, speed on
100k synthetic vectors.

Quality: from /work/shared/photos/imagenet-500, `--originals` photos each get five copies in a
temp dir (resized to 50%, re-encoded at q40, a 5% crop, an EXIF-rotated copy whose pixels are
stored rotated with Orientation 6, a greyscale copy); the other photos are distinct negatives.
Each model embeds everything through imgsearch.decode (as `imgsearch index` would); groups come
from imgsearch.duplicates.find_groups(kind="near"). Pairwise precision/recall: a predicted pair
is two photos in one group; a true pair is two photos of one family.

Speed: `duplicates_s_100k` = find_groups(kind="near") over 100k synthetic CLIP-like vectors
(benchmarks/synth.py) with 5,000 planted families of 2-4, FAISS neighbour search included.

    python benchmarks/duplicates_eval.py --models vit-b-32,tiny,tinyclip
    python benchmarks/duplicates_eval.py --speed-only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgsearch import duplicates  # noqa: E402
from imgsearch.duplicates import DuplicateParams, ImageFacts  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "imagenet-500"
VARIANTS = ("resized", "q40", "crop5", "exif_rotated", "grey")


def make_set(
    src: Path, dest: Path, originals: int, seed: int, negatives: int = 10_000
) -> list[tuple[Path, int, str]]:
    """(path, family, variant): family -1 for the distinct negatives."""
    from PIL import Image

    paths = sorted(src.glob("*.JPEG"))
    random.Random(seed).shuffle(paths)
    paths = paths[: originals + negatives]
    rng = random.Random(seed)
    out = []
    for family, path in enumerate(paths):
        stem = dest / f"{family:03d}"
        copy = Path(f"{stem}_original.jpg")
        shutil.copyfile(path, copy)
        if family >= originals:
            out.append((copy, -1, "negative"))
            continue
        out.append((copy, family, "original"))
        image = Image.open(path).convert("RGB")
        w, h = image.size
        image.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(
            f"{stem}_resized.jpg", quality=90
        )
        image.save(f"{stem}_q40.jpg", quality=40)
        dx, dy = round(0.05 * w), round(0.05 * h)
        ox, oy = rng.randint(0, dx), rng.randint(0, dy)
        image.crop((ox, oy, ox + w - dx, oy + h - dy)).save(f"{stem}_crop5.jpg", quality=90)
        exif = Image.Exif()
        exif[0x0112] = 6  # ExifTags.Base.Orientation: shown rotated 90 degrees clockwise
        image.transpose(Image.Transpose.ROTATE_90).save(f"{stem}_exif_rotated.jpg", quality=90,
                                                        exif=exif.tobytes())  # fmt: skip
        image.convert("L").save(f"{stem}_grey.jpg", quality=90)
        out += [(Path(f"{stem}_{v}.jpg"), family, v) for v in VARIANTS]
    return out


def embed(model: str, items: list[tuple[Path, int, str]]) -> tuple[np.ndarray, float]:
    """Vectors of every file through imgsearch.decode + Encoder, and the seconds it took."""
    from imgsearch.decode import Decoded, decode
    from imgsearch.encoder import load_encoder

    if model == "vit-b-32":
        encoder = load_encoder("ViT-B-32", "none", "cpu")
    elif model == "tiny":
        from tests.support.models import make_random_model_dir

        folder = make_random_model_dir(Path(tempfile.mkdtemp(prefix="dup-tiny-")))
        encoder = load_encoder(f"local-dir:{folder}", "", "cpu")
    else:
        from tests.support.tinyclip import train_tiny_clip

        cache = Path(tempfile.gettempdir()) / "imgsearch-test-cache"
        os.environ.setdefault("IMGSEARCH_TEST_CACHE", str(cache))
        folder = train_tiny_clip(Path(tempfile.mkdtemp(prefix="dup-tinyclip-")))
        encoder = load_encoder(f"local-dir:{folder}", "", "cpu")
    started = time.perf_counter()
    spec = encoder.spec.preprocess
    vectors = []
    for start in range(0, len(items), 32):
        batch = [
            decode(str(p), spec, max_pixels=200_000_000) for p, _, _ in items[start : start + 32]
        ]
        assert all(isinstance(d, Decoded) for d in batch)
        vectors.append(encoder.embed_pixels(np.stack([d.pixels for d in batch])))  # type: ignore[union-attr]
    return np.concatenate(vectors), time.perf_counter() - started


def pair_metrics(groups: list, family: dict[int, int], variant: dict[int, str]) -> dict:
    """Pairwise precision and recall, and per-variant recall (grouped with its original)."""
    predicted = set()
    group_of = {}
    for n, g in enumerate(groups):
        ids = sorted(m.id for m in g.members)
        predicted |= {(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]}
        group_of.update({i: n for i in ids})
    members: dict[int, list[int]] = {}
    for i, f in family.items():
        if f >= 0:
            members.setdefault(f, []).append(i)
    truth = {(a, b) for ids in members.values() for i, a in enumerate(sorted(ids))
             for b in sorted(ids)[i + 1 :]}  # fmt: skip
    correct = len(predicted & truth)
    original = {family[i]: i for i in family if variant[i] == "original"}
    per_variant = {}
    for v in VARIANTS:
        copies = [i for i in family if variant[i] == v]
        together = [
            group_of.get(i) is not None and group_of.get(i) == group_of.get(original[family[i]])
            for i in copies
        ]
        per_variant[v] = float(np.mean(together))
    return {
        "precision": correct / len(predicted) if predicted else 1.0,
        "recall": correct / len(truth),
        "groups": len(groups),
        "false_pairs": len(predicted - truth),
        "recall_by_variant": per_variant,
    }


def quality(models: list[str], originals: int, negatives: int, seed: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="dup-eval-") as tmp:
        items = make_set(PHOTOS, Path(tmp), originals, seed, negatives)
        ids = list(range(len(items)))
        family = {i: f for i, (_, f, _) in zip(ids, items)}
        variant = {i: v for i, (_, _, v) in zip(ids, items)}
        facts = {
            i: ImageFacts(path=str(p), size=p.stat().st_size) for i, (p, _, _) in zip(ids, items)
        }
        started = time.perf_counter()
        hashes = {i: duplicates.perceptual_hash(facts[i].path) for i in ids}
        hash_s = time.perf_counter() - started
        print(f"{len(items)} files ({originals} families of 6, {len(items) - 6 * originals} "
              f"negatives); perceptual hashes {hash_s:.1f} s")  # fmt: skip
        for model in models:
            vectors, embed_s = embed(model, items)
            same = np.array([family[a] == family[b] >= 0 for a in ids for b in ids if a < b])
            cos = (vectors @ vectors.T)[np.triu_indices(len(ids), 1)]
            print(f"\n{model}: embedded in {embed_s:.0f} s; cosine of true pairs "
                  f"min {cos[same].min():.3f} p5 {np.quantile(cos[same], 0.05):.3f}, "
                  f"distinct pairs p99.9 {np.quantile(cos[~same], 0.999):.3f} max "
                  f"{cos[~same].max():.3f}")  # fmt: skip
            rows = {}
            neighbours = duplicates.faiss_neighbours(vectors)
            grid = [
                (k, c, h, False) for k in (10, 30) for c in (-1.0, 0.8, 0.9) for h in (10, 12, 14)
            ]
            grid += [(10, c, 12, True) for c in (-1.0, 0.5, 0.8)]  # + hash-band candidates
            for k, min_cos, max_hash, bands in grid:
                params = DuplicateParams(
                    neighbours=k,
                    near_min_cosine=min_cos,
                    near_max_hash=max_hash,
                    hash_candidates=bands,
                )
                groups = duplicates.find_groups(
                    ids,
                    vectors,
                    neighbours,
                    facts,
                    "near",
                    params=params,
                    phash_fn=hashes.__getitem__,
                )
                name = f"k={k} cos>={min_cos} hash<={max_hash}" + (" +bands" if bands else "")
                rows[name] = pair_metrics(groups, family, variant)
            default = DuplicateParams()
            key = (f"k={default.neighbours} cos>={default.near_min_cosine} "
                   f"hash<={default.near_max_hash}")  # fmt: skip
            for name, row in rows.items():
                mark = "  <- default" if name == key else ""
                by = " ".join(f"{v} {r:.2f}" for v, r in row["recall_by_variant"].items())
                print(f"  {name:33} P {row['precision']:.4f} R {row['recall']:.4f} "
                      f"false pairs {row['false_pairs']:3d} | {by}{mark}")  # fmt: skip
            results[model] = {"embed_s": embed_s, "default": rows[key], "sweep": rows}
    return results


def speed(n: int, families: int, seed: int) -> dict:
    """find_groups(kind near) over n synthetic vectors with planted families of 2-4."""
    import faiss

    from benchmarks.synth import Mixture, sample

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(seed)
    vectors = sample(Mixture(), n, seed=seed)
    hashes = {i: (int(h), int(h)) for i, h in enumerate(rng.integers(0, 2**63, n))}
    planted = []
    row = 0
    for _ in range(families):
        size = int(rng.integers(2, 5))
        base = row
        for j in range(1, size):
            noisy = vectors[base] + rng.normal(0, 0.2 / np.sqrt(vectors.shape[1]), vectors.shape[1])
            vectors[base + j] = noisy / np.linalg.norm(noisy)
            flips = sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, 6)), replace=False))
            hashes[base + j] = (hashes[base][0] ^ flips, hashes[base][1] ^ flips)
        planted.append(list(range(base, base + size)))
        row += size
    ids = list(range(n))
    facts = {i: ImageFacts(path=f"/synthetic/{i:06d}.jpg", size=1000 + i) for i in ids}
    started, cpu = time.perf_counter(), time.process_time()
    groups = duplicates.find_groups(ids, vectors, duplicates.faiss_neighbours(vectors), facts,
                                    "near", phash_fn=hashes.__getitem__)  # fmt: skip
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    found = {frozenset(m.id for m in g.members) for g in groups}
    exact = sum(frozenset(f) in found for f in planted) / len(planted)
    print(f"\nspeed: {n} vectors, {families} planted families: {len(groups)} groups in "
          f"{seconds:.1f} s wall, {cpu:.1f} s CPU (2 faiss threads); planted families found "
          f"whole {exact:.3f}")  # fmt: skip
    suffix = "100k" if n == 100_000 else str(n)
    return {f"duplicates_s_{suffix}": seconds, f"duplicates_cpu_s_{suffix}": cpu,
            "duplicates_planted_found": exact, "duplicates_groups": len(groups)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vit-b-32,tiny,tinyclip")
    parser.add_argument("--originals", type=int, default=100)
    parser.add_argument("--negatives", type=int, default=400, help="distinct photos")
    parser.add_argument("--speed-n", type=int, default=100_000)
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out: dict = {}
    if not args.speed_only:
        out["quality"] = quality(args.models.split(","), args.originals, args.negatives, args.seed)
    if args.speed_n:
        out.update(speed(args.speed_n, args.speed_n // 20, args.seed))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
