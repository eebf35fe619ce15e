"""Cold multilingual query (issue 13): a fresh `imgsearch query "빨간 원"` on a Korean library.

    python benchmarks/multilingual.py [--runs 7] [--out FILE]

Measured on the bilingual TOY model of the test suite (tests/support/bilingual.py: a 2-layer,
64-wide XLM-R-like HF text tower, tokenizer trained on the shapes captions), because no real
multilingual weights can be downloaded here. It measures the query path (process start,
imports, `tokenizers` + ONNX text tower load, query, SQLite + FAISS), not a real tower's
compute: xlm-roberta-base's text tower is ~280M parameters (most of it the 250k-row token table,
memory-mapped) and adds its own per-query cost. The library is built through the real CLI;
the query process is checked to import neither torch nor transformers.

Key: `cli_cold_query_s_multilingual` (median wall seconds, page cache warm; target <= 1.0 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.throughput import imgsearch_command, run_command  # noqa: E402

KOREAN_QUERIES = ("빨간 원", "파란 사각형", "노란 별", "보라색 삼각형", "초록색 원", "빨간 것")
ENGLISH_QUERIES = ("a red circle", "a blue square", "a yellow star", "a purple triangle")
ENGLISH_QUERIES += ("a green circle", "something red")
TORCH_PROBE = """
import sys
from click.testing import CliRunner
from imgsearch.cli import cli
r = CliRunner().invoke(cli, ["query", "빨간 원", "--library", {library!r}, "--json"])
assert r.exit_code == 0, r.output
print(sorted(m for m in ("torch", "open_clip", "transformers") if m in sys.modules))
"""


def xlmr_base_model(folder: Path) -> Path:
    """A `local-dir:` model shaped like xlm-roberta-base-ViT-B-32, with RANDOM weights.

    Timing only (rankings are meaningless): the text tower has xlm-roberta-base's sizes (250,002
    tokens, 768 wide, 12 layers; ~278M parameters), the tokenizer is the toy one.
    """
    import open_clip
    import torch
    import transformers
    from safetensors.torch import save_file

    from tests.support.bilingual import corpus
    from tests.support.hfmodels import make_xlmr_tokenizer

    make_xlmr_tokenizer(folder, corpus(), vocab_size=300)
    transformers.XLMRobertaConfig(
        vocab_size=250002, max_position_embeddings=514, pad_token_id=1, type_vocab_size=1
    ).save_pretrained(folder)
    model_cfg = open_clip.get_model_config("xlm-roberta-base-ViT-B-32")
    model_cfg["text_cfg"].update(
        hf_model_name=str(folder), hf_tokenizer_name=str(folder), hf_model_pretrained=False
    )
    torch.manual_seed(0)
    model = open_clip.model.CustomTextCLIP(**model_cfg)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}), encoding="utf-8"
    )
    return folder


def build_library(work: Path, per_class: int = 5, *, xlmr_base: bool = False) -> Path:
    """Index shapes pictures with the bilingual toy model through the real CLI."""
    from tests.support.bilingual import train_bilingual_clip
    from tests.support.shapes import write_pictures

    # The toy comes from IMGSEARCH_TEST_CACHE when a trained one is there.
    make = xlmr_base_model if xlmr_base else train_bilingual_clip
    model = make(work / "model")
    write_pictures(work / "pictures", per_class=per_class, seed=7)
    library = work / "library"
    args = [*imgsearch_command(), "index", str(work / "pictures"), "--library", str(library)]
    run = run_command([*args, "--model", f"local-dir:{model}", "-q"])
    if run.returncode != 0:
        raise RuntimeError(f"indexing failed:\n{run.stderr[-2000:]}")
    if not (library / "text-encoder" / "manifest.json").is_file():
        raise RuntimeError(f"no ONNX text encoder was exported into {library}")
    return library


def _timed(args: list[str]) -> tuple[float, float]:
    """(wall, CPU user+sys) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_command(args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{run.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run.wall_s, cpu


def cold_query_multilingual(library: Path, *, runs: int = 7) -> dict[str, object]:
    """Median wall and CPU seconds of fresh Korean `imgsearch query` processes.

    English queries on the same library run interleaved with them, as a same-moment baseline:
    on a shared machine the load moves the wall time more than the query path does.
    """
    samples: dict[str, list[tuple[float, float]]] = {"ko": [], "en": []}
    for i in range(runs + 1):
        for lang, text in (("ko", KOREAN_QUERIES[i % 6]), ("en", ENGLISH_QUERIES[i % 6])):
            timing = _timed([*imgsearch_command(), "query", text, "--library", str(library)])
            if i:  # the first round only warms the page cache
                samples[lang].append(timing)
    probe = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE.format(library=str(library))],
        capture_output=True,
        text=True,
        check=True,
    )
    ko_wall = [w for w, _ in samples["ko"]]
    return {
        "cli_cold_query_s_multilingual": statistics.median(ko_wall),
        "cli_cold_query_s_multilingual_min": min(ko_wall),
        "cli_cold_query_s_multilingual_max": max(ko_wall),
        "cli_cold_query_cpu_s_multilingual": statistics.median(c for _, c in samples["ko"]),
        "cli_cold_query_s_english_same_library": statistics.median(w for w, _ in samples["en"]),
        "cli_cold_query_cpu_s_english_same_library": statistics.median(c for _, c in samples["en"]),
        "multilingual_query_heavy_imports": probe.stdout.strip(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--xlmr-base",
        action="store_true",
        help="instead of the toy: random weights with xlm-roberta-base's text tower sizes",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="imgsearch-ml-") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "xdg-cache")
        library = build_library(
            Path(tmp), per_class=1 if args.xlmr_base else 5, xlmr_base=args.xlmr_base
        )
        result = {
            "machine": platform.node(),
            "loadavg_start": os.getloadavg()[0],
            **cold_query_multilingual(library, runs=args.runs),
            "multilingual_model": (
                "xlm-roberta-base-ViT-B-32 sizes, random weights (timing only)"
                if args.xlmr_base
                else "toy bilingual CLIP (tests/support/bilingual.py), not a real model"
            ),
            "loadavg_end": os.getloadavg()[0],
        }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    out = args.out or Path(__file__).resolve().parent / "results" / (
        f"multilingual{'-xlmr-base' if args.xlmr_base else ''}-{stamp}-{platform.node()}.json"
    )
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
