"""Gated vs overlapped decoding with the ONNX image encoder.

    python benchmarks/onnx_pipeline.py --photos DIR [-n 128] [--rounds 2] [--12mp]

Runs indexer.pipeline.run into fresh libraries in this process (exports already cached), each
variant in turn per round (order reversed every other round): DecodeStream gated (decoders
work only between model batches: the torch-era default on the CPU, where decoders running
under the model stalled its OpenMP threads at every barrier) or overlapped (decoders always
busy). The image tower now runs one single-threaded run per core (imgsearch/imageonnx.py),
with no barrier inside the model to stall. Reports the median wall-clock of decode + embed +
store (`IndexResult.embed_seconds`) per variant; `--12mp` uses the photos upscaled to 12 MP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=Path("/work/shared/photos/imagenet-500"))
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--12mp", dest="mp12", action="store_true")
    args = ap.parse_args()

    from benchmarks import corpus
    from imgsearch import config, runtime
    from imgsearch.encoder import load_encoder
    from imgsearch.library import Library
    from indexer import pipeline

    settings = config.replace(config.resolve(), model=args.model, pretrained="none")
    scratch = Path(tempfile.mkdtemp(prefix="onnx-pipeline-"))
    files = corpus.photos(args.photos, args.n)
    if args.mp12:
        files = corpus.make_12mp(files, corpus.DEFAULT_CACHE.expanduser())
    folder = corpus.subset_folder(files, scratch / "set")
    corpus.warm_page_cache(sorted(folder.iterdir()))
    real_stream = pipeline.DecodeStream
    times: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for gated in (True, False)[:: 1 if round_ % 2 == 0 else -1]:
            name = "gated" if gated else "overlapped"

            def stream(*a, _gated=gated, **kw):  # type: ignore[no-untyped-def]
                kw["gated"] = _gated
                return real_stream(*a, **kw)

            pipeline.DecodeStream = stream  # type: ignore[misc]
            lib_path = scratch / "library"
            shutil.rmtree(lib_path, ignore_errors=True)
            lib = Library.open(lib_path, create=True)
            with lib, lib.write_lock(wait=False):
                result = pipeline.run(
                    lib, [str(folder)], settings,
                    load_encoder=lambda: runtime.load_image_encoder(
                        args.model, "none", settings
                    ),
                    load_torch=lambda: load_encoder(args.model, "none", "cpu"),
                    model=(args.model, "none"),
                )  # fmt: skip
            assert result.added == args.n, result
            times.setdefault(name, []).append(result.embed_seconds)
            print(f"{name}: {result.embed_seconds:.1f} s", file=sys.stderr, flush=True)
    pipeline.DecodeStream = real_stream  # type: ignore[misc]
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.n} photos, load average {os.getloadavg()[0]:.1f}")
    for name, values in times.items():
        med = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:<26} {args.n / med:6.1f} img/s  (runs: {runs} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
