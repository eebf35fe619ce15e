"""The opt-in int8 image encoder against fp32 on real photos: fidelity, speed (benchmarks/ONNX.md).

    python benchmarks/int8_fidelity.py [--photos ../shared/photos/imagenet-500] [--model ViT-B-32]
                                       [--per-channel] [--rounds 3] [--seconds 4]

The exports are the cached ones (made first if missing). `--per-channel` adds a third export,
quantised with one scale per output channel instead of one per tensor (onnxruntime's
`quantize_dynamic(per_channel=True)`), into a temporary folder. Reported per export: the lowest
and median cosine against fp32 over the photos, the share of self-queries with the same top-10
set, the mean top-10 overlap, and images/s of the model alone on 64 of the photos (the index
path: one single-threaded stream per core), rounds interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def per_channel_export(model: str, folder: Path) -> Path:
    """The int8 export with per-channel weight scales (onnxruntime's quantiser, patched)."""
    from onnxruntime import quantization

    from imgsearch import exports
    from imgsearch.encoder import load_encoder

    plain = quantization.quantize_dynamic

    def per_channel(*args: object, **kwargs: object) -> None:
        plain(*args, **{**kwargs, "per_channel": True})  # type: ignore[arg-type]

    quantization.quantize_dynamic = per_channel  # type: ignore[assignment]
    try:
        exports.export_image_encoder(folder, load_encoder(model, "none", "cpu"), precision="int8")
    finally:
        quantization.quantize_dynamic = plain
    return folder


def top10(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    return np.argsort(-(vectors @ vectors.T), axis=1)[:, 1:11]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=REPO.parent / "shared/photos/imagenet-500")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--per-channel", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    if not args.photos.is_dir():
        print(f"no photos at {args.photos}", file=sys.stderr)
        return 2

    from imgsearch import decode, exports, imageonnx
    from imgsearch.encoder import load_encoder

    folders = {
        "fp32": exports.image_export_dir(args.model, "none"),
        "int8": exports.image_export_dir(args.model, "none", "int8"),
    }
    for name, folder in folders.items():
        if not imageonnx.exported(folder):
            exports.export_image_encoder(
                folder, load_encoder(args.model, "none", "cpu"), precision=name
            )
    tmp = tempfile.TemporaryDirectory(prefix="int8-per-channel-")
    if args.per_channel:
        folders["int8 per-channel"] = per_channel_export(args.model, Path(tmp.name))
    encoders = {name: imageonnx.OnnxImageEncoder(folder) for name, folder in folders.items()}

    spec = encoders["fp32"].spec.preprocess
    decoded = [decode.decode(str(p), spec, max_pixels=10**9) for p in sorted(args.photos.iterdir())]
    pixels = np.stack([d.pixels for d in decoded if isinstance(d, decode.Decoded)])
    vectors = {name: enc.embed_pixels(pixels) for name, enc in encoders.items()}
    ref = vectors["fp32"]
    ref_top = top10(ref)
    for name, got in vectors.items():
        low, same = imageonnx.compare(ref, got, k=10)  # what the export's self-check measures
        overlap = np.mean([len(set(a) & set(b)) for a, b in zip(ref_top, top10(got))]) / 10
        print(
            f"{name:18s} {len(ref)} photos: cosine min {low:.6f} "
            f"median {np.median(np.sum(ref * got, axis=1)):.6f}, same top-10 {same:.3f}, "
            f"top-10 overlap {overlap:.4f}"
        )

    batch = pixels[:64]
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):
        for name, enc in encoders.items():
            enc.embed_pixels(batch[:8])
            start, done = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                done += len(enc.embed_pixels(batch))
            rates[name].append(done / (time.perf_counter() - start))
    for name, runs in rates.items():
        each = ", ".join(f"{r:.1f}" for r in runs)
        print(f"{name:18s} {statistics.median(runs):.1f} img/s ({each})")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
