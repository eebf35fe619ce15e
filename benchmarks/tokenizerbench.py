"""CLIP BPE on the query path: our tokenizer (imgsearch.tokenizer) vs the Rust `tokenizers` one.

    python benchmarks/tokenizerbench.py [--out FILE]

Issue 13 asks to keep ours or switch to `tokenizers`, whichever gives exactly open_clip's ids
and is faster. The `tokenizers` pipeline is built as transformers' CLIP converter builds it
(CLIP's regex split, byte-level alphabet, BPE with "</w>" word ends), fed the same cleaned text
(ftfy + HTML unescape + whitespace + lower, `imgsearch.tokenizer.clean_text`), with open_clip's
SOT/EOT and truncation. Ids are compared on tests/test_tokenizer.py's corpus (449 texts:
handwritten edge cases, random mixed-script strings, random ASCII). Each timing runs in a fresh
interpreter (load = imports + reading the file an export would hold: our bpe_merges.txt,
or a tokenizer.json saved from the `tokenizers` pipeline).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPLIT = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def save_rust_tokenizer(merges_path: Path, dest: Path) -> None:
    """Build the `tokenizers` CLIP BPE (as transformers' converter does) and save it as JSON."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    from imgsearch.tokenizer import Tokenizer as Ours

    vocab = Ours(merges_path).encoder
    lines = merges_path.read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(m.split(" ")) for m in lines if m]
    bpe = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.add_special_tokens(["<start_of_text>", "<end_of_text>"])
    tok.save(str(dest))


BUILD_RUST = """
import time; t0 = time.perf_counter()
from tokenizers import Tokenizer
from imgsearch.tokenizer import clean_text
tok = Tokenizer.from_file({path!r})
sot, eot = tok.token_to_id("<start_of_text>"), tok.token_to_id("<end_of_text>")
def encode(texts, limit=77):
    out = []
    for enc in tok.encode_batch([clean_text(t, "lower") for t in texts], add_special_tokens=False):
        ids = [sot, *enc.ids, eot]
        if len(ids) > limit:
            ids = ids[:limit]; ids[-1] = eot
        out.append(ids)
    return out
"""
BUILD_OURS = """
import time; t0 = time.perf_counter()
from imgsearch.tokenizer import Tokenizer
tok = Tokenizer({merges!r})
encode = tok.encode_batch
"""
TIME = """
t1 = time.perf_counter()
first = encode(["a dog on a beach"])
t2 = time.perf_counter()
texts = {texts!r}
t3 = time.perf_counter(); rows = encode(texts); t4 = time.perf_counter()
import json; print(json.dumps({{"load_s": t1 - t0, "first_s": t2 - t1, "corpus_s": t4 - t3,
                               "ids": rows}}))
"""


def run(kind: str, merges: Path, texts: list[str]) -> dict:
    if kind == "tokenizers":
        build = BUILD_RUST.format(path=str(merges.with_name("tokenizer.json")))
    else:
        build = BUILD_OURS.format(merges=str(merges))
    code = build + TIME.format(texts=texts)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    from imgsearch.tokenizer import read_merges, write_merges
    from tests.test_tokenizer import CORPUS

    reference = SimpleTokenizer()(CORPUS).tolist()  # (N, 77), zero-padded (id 0 is also "!")
    result: dict[str, object] = {"machine": platform.node(), "corpus_texts": len(CORPUS)}
    with tempfile.TemporaryDirectory() as tmp:
        merges = Path(tmp) / "bpe_merges.txt"
        write_merges(read_merges(Path(default_bpe())), merges)
        save_rust_tokenizer(merges, merges.with_name("tokenizer.json"))
        for kind in ("imgsearch", "tokenizers"):
            runs = [run(kind, merges, CORPUS) for _ in range(args.runs)]
            padded = [row + [0] * (77 - len(row)) for row in runs[0]["ids"]]
            wrong = sum(a != b for a, b in zip(padded, reference))
            result[f"{kind}_mismatched_texts"] = wrong
            for key in ("load_s", "first_s", "corpus_s"):
                result[f"{kind}_{key}"] = statistics.median(r[key] for r in runs)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    out = args.out or Path(__file__).resolve().parent / "results" / (
        f"tokenizer-{stamp}-{platform.node()}.json"
    )
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
