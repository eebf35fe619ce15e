"""Gated vs overlapped decoding with the ONNX image encoder, and onnxruntime thread spinning.

    python benchmarks/onnx_pipeline.py --photos DIR [-n 96] [--rounds 2]

Runs indexer.pipeline.run into fresh libraries in this process (exports already cached), each
variant in turn per round (order reversed every other round): DecodeStream gated (the
torch-era default on the CPU) or overlapped, with onnxruntime's intra-op threads spinning
(its default) or not. Reports the median wall-clock of decode + embed + store
(`IndexResult.embed_seconds`) per variant.
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
    ap.add_argument("-n", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="ViT-B-32")
    args = ap.parse_args()

    import onnxruntime as ort

    from benchmarks import corpus
    from imgsearch import config, imageonnx, runtime
    from imgsearch.encoder import load_encoder
    from imgsearch.library import Library
    from indexer import pipeline

    settings = config.replace(config.resolve(), model=args.model, pretrained="none")
    scratch = Path(tempfile.mkdtemp(prefix="onnx-pipeline-"))
    folder = corpus.subset_folder(corpus.photos(args.photos, args.n), scratch / "set")
    corpus.warm_page_cache(sorted(folder.iterdir()))
    real_stream = pipeline.DecodeStream
    real_open = imageonnx.OnnxImageEncoder._open
    times: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for gated in (True, False)[:: 1 if round_ % 2 == 0 else -1]:
            for spin in (True, False):
                name = f"{'gated' if gated else 'overlapped'} spin={'on' if spin else 'off'}"

                def stream(*a, _gated=gated, **kw):  # type: ignore[no-untyped-def]
                    kw["gated"] = _gated
                    return real_stream(*a, **kw)

                def opened(self, d, m, t, _spin=spin):  # type: ignore[no-untyped-def]
                    real_open(self, d, m, t)
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = t or (os.cpu_count() or 1)
                    opts.inter_op_num_threads = 1
                    opts.add_session_config_entry(
                        "session.intra_op.allow_spinning", "1" if _spin else "0"
                    )
                    self.session = ort.InferenceSession(
                        str(d / imageonnx.GRAPH), opts, providers=["CPUExecutionProvider"]
                    )

                pipeline.DecodeStream = stream  # type: ignore[misc]
                imageonnx.OnnxImageEncoder._open = opened  # type: ignore[method-assign]
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
