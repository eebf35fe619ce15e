"""imgsearch side by side with rclip (issue 9): same photos, same architecture, interleaved.

    python benchmarks/peers.py [--photos DIR] [-n N] [--rounds R] [--skip-12mp]

rclip is installed from the package registry into its own venv (`--rclip-venv`, made if
missing), so it cannot change this project's packages. Its model, open_clip ViT-B-32-256, is
exported here with random weights (no hub access) into rclip's data dir under the names rclip
looks for (`rclip/model_download.py`: MODEL_SUBDIR/visual.onnx, textual.onnx, and the BPE
vocabulary); rclip only checks that the files exist. imgsearch indexes the same architecture
(`--model ViT-B-32-256 --pretrained none`) with its packaged settings; both exports are made
before anything is timed. Per set and round, in alternating order: fresh index (rclip: a
query on a new database, which indexes the folder first), unchanged re-index (rclip: the same
again) and cold query (rclip `--no-indexing`), wall-clock and peak RSS of the whole process
tree (psutil, main process + workers). Results: benchmarks/results/peers-<date>-<machine>.json.

Both tools start the way an installed tool does. rclip runs from its venv with the bytecode
pip compiled; imgsearch runs from a bare venv interpreter (`--imgsearch-venv`) with this
checkout and this interpreter's site-packages on PYTHONPATH, its bytecode compiled first, the
way `pip install` leaves a package. Without that, this machine would charge imgsearch alone for
two things no user has. PYTHONDONTWRITEBYTECODE is set here, so an editable checkout
recompiles every module on every run (~0.1 s). A sandbox `.pth` file in the base
site-packages imports certifi at every interpreter start (~50 ms), and a venv skips it.
`startup_s_*` records what a bare start costs each way.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import corpus, throughput  # noqa: E402

MODEL = "ViT-B-32-256"
GRAPH_TREATMENT = "plain attention, patch conv as MatMul"
RCLIP_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # rclip.model_download.MODEL_SUBDIR
RCLIP_VOCAB = "tokenizer/bpe_simple_vocab_16e6.txt.gz"  # rclip.model_download.TOKENIZER_VOCAB
QUERY = "a photo of a dog"
REPO = Path(__file__).resolve().parent.parent


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_rclip(venv: Path) -> Path:
    """The rclip executable in its own venv (created and installed on first use)."""
    exe = venv / "bin" / "rclip"
    if not exe.is_file():
        log(f"installing rclip into {venv} ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "rclip"], check=True)
    return exe


def ensure_imgsearch_interpreter(venv: Path) -> list[str]:
    """imgsearch's command on a bare venv interpreter (no site-packages .pth files), like rclip's.

    The venv holds only a console script; imports come from PYTHONPATH (this checkout, then
    this interpreter's site-packages), which is set in `Tools.env`. The checkout's modules are
    byte-compiled first, as `pip install` does.
    """
    import compileall

    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = venv / "bin" / "imgsearch"
    script.write_text(  # as pip writes it: the guard matters, decode workers re-import __main__
        f"#!{python}\nimport sys\nfrom imgsearch.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    for package in ("imgsearch", "indexer"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    return [str(script)]


def startup_s(python: str, env: dict[str, str], runs: int = 5) -> float:
    """Best-of wall time of `python -c pass` in `env`: the interpreter's own start cost."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], env=env, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def export_rclip_model(datadir: Path) -> None:
    """ViT-B-32-256 with random weights as rclip's ONNX files (input 'input', output 'output')."""
    folder = datadir / RCLIP_SUBDIR
    stamp = folder / "imgsearch-graph.txt"  # the graph treatment these files were made with
    if all((folder / f).is_file() for f in ("visual.onnx", "textual.onnx")) and (
        stamp.is_file() and stamp.read_text() == GRAPH_TREATMENT
    ):
        return
    import open_clip
    import torch

    from imgsearch import imageonnx

    log("exporting ViT-B-32-256 (random weights) for rclip ...")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL, pretrained=None).eval().requires_grad_(False)
    # the same graph treatment imgsearch's own export gets, so the comparison is of pipelines:
    # plain attention, and the patch conv as a MatMul (rclip normalises in numpy, so its graph
    # takes normalised NCHW floats and has no mean/std to fold)
    imageonnx._plain_attention(model)
    imageonnx._patch_embedding(model)

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.encode_image(x)

    class Textual(Visual):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(ids)

    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module, sample, name in (
            (Visual(), torch.zeros(1, 3, 256, 256), "visual.onnx"),
            (Textual(), open_clip.get_tokenizer(MODEL)(["a dog"]), "textual.onnx"),
        ):
            torch.onnx.export(
                module, (sample,), str(folder / name), dynamo=False, opset_version=17,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )  # fmt: skip
    stamp.write_text(GRAPH_TREATMENT)
    vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    (datadir / RCLIP_VOCAB).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(vocab) as check:  # a real vocabulary file, not a placeholder
        check.read(16)
    shutil.copy2(vocab, datadir / RCLIP_VOCAB)


def linked_set(files: list[Path], dest: Path) -> Path:
    """A folder of hard links (copies across filesystems): rclip skips symlinked files."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in files:
        try:
            os.link(f, dest / f.name)
        except OSError:
            shutil.copy2(f, dest / f.name)
    return dest


class Tools:
    """The two command lines, with their state kept under `scratch`."""

    def __init__(self, rclip: Path, imgsearch: list[str], datadir: Path, scratch: Path) -> None:
        self.rclip, self.imgsearch, self.datadir, self.scratch = rclip, imgsearch, datadir, scratch
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env = {**base, "RCLIP_DATADIR": str(datadir), "HF_HUB_OFFLINE": "1"}
        site = sysconfig.get_paths()["purelib"]
        self.imgsearch_env = {**self.env, "PYTHONPATH": os.pathsep.join([str(REPO), site])}

    def fresh(self, tool: str, folder: Path) -> throughput.CommandRun:
        if tool == "rclip":
            for db in self.datadir.glob("db.sqlite3*"):
                db.unlink()
            return self._run([str(self.rclip), "-f", "-t", "1", QUERY], folder)
        shutil.rmtree(self.scratch / "library", ignore_errors=True)
        return self._imgsearch("index", str(folder))

    def again(self, tool: str, folder: Path) -> throughput.CommandRun:
        if tool == "rclip":
            return self._run([str(self.rclip), "-f", "-t", "1", QUERY], folder)
        return self._imgsearch("index", str(folder))

    def query(self, tool: str, folder: Path) -> throughput.CommandRun:
        if tool == "rclip":
            return self._run([str(self.rclip), "-n", "-f", "-t", "10", QUERY], folder)
        return self._imgsearch("query", QUERY, "-k", "10")

    def _imgsearch(self, *args: str) -> throughput.CommandRun:
        cmd = [*self.imgsearch, *args, "--library", str(self.scratch / "library")]
        if args[0] == "index":
            cmd += ["--model", MODEL, "--pretrained", "none"]
        return self._run(cmd, None, self.imgsearch_env)

    def _run(
        self, cmd: list[str], cwd: Path | None, env: dict[str, str] | None = None
    ) -> throughput.CommandRun:
        old = os.getcwd()
        os.chdir(cwd or old)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env or self.env)
        try:
            run = throughput.run_command(cmd)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            os.chdir(old)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
        return run


COLD_RUNS = 5  # cold queries per tool and round (one process each): one is ±30% on this VM


def measure(tools: Tools, label: str, folder: Path, rounds: int, r: dict[str, Any]) -> None:
    """Interleaved rounds on one set; medians per tool and imgsearch's speed-up (rclip / ours)."""
    figures: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        order = ("rclip", "imgsearch") if i % 2 == 0 else ("imgsearch", "rclip")
        for tool in order:
            fresh = tools.fresh(tool, folder)
            again = tools.again(tool, folder)
            colds = [tools.query(tool, folder).wall_s for _ in range(COLD_RUNS)]
            for key, value in (
                ("fresh_index_s", fresh.wall_s),
                ("reindex_s", again.wall_s),
                ("fresh_peak_rss_mb", fresh.peak_rss_mb),
            ):
                figures.setdefault((tool, key), []).append(value)
            figures.setdefault((tool, "cold_query_s"), []).extend(colds)
            log(
                f"{label} round {i + 1} {tool}: fresh {fresh.wall_s:.1f} s "
                f"({fresh.peak_rss_mb:.0f} MB), re-index {again.wall_s:.2f} s, "
                f"cold query {statistics.median(colds):.2f} s (median of {COLD_RUNS})"
            )
    for (tool, key), values in figures.items():
        r[f"{label}_{tool}_{key}"] = statistics.median(values)
        r[f"{label}_{tool}_{key}_runs"] = ",".join(f"{v:.2f}" for v in values)
    for key in ("fresh_index_s", "reindex_s", "cold_query_s", "fresh_peak_rss_mb"):
        r[f"{label}_speedup_{key}" if key.endswith("_s") else f"{label}_ratio_{key}"] = (
            r[f"{label}_rclip_{key}"] / r[f"{label}_imgsearch_{key}"]
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=Path("/work/shared/photos/imagenet-500"))
    ap.add_argument("-n", type=int, default=0, help="photos per set (0: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-12mp", action="store_true")
    ap.add_argument("--rclip-venv", type=Path, default=Path("/tmp/rclip-venv"))
    ap.add_argument("--imgsearch-venv", type=Path, default=Path("/tmp/imgsearch-bench-venv"))
    ap.add_argument("--cache", type=Path, default=corpus.DEFAULT_CACHE)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    cache = args.cache.expanduser()
    scratch = Path(tempfile.mkdtemp(prefix="peers-"))
    os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")  # packaged settings only
    for key in [k for k in os.environ if k.startswith("IMGSEARCH_")]:
        del os.environ[key]
    os.environ["HF_HUB_OFFLINE"] = "1"
    datadir = cache / "rclip-data"
    r: dict[str, Any] = {
        "machine": platform.node(), "cpu_count": os.cpu_count(), "model": f"{MODEL} / none",
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "commit": _commit(), "loadavg_start": os.getloadavg()[0],
    }  # fmt: skip
    try:
        rclip = ensure_rclip(args.rclip_venv)
        r["rclip_version"] = subprocess.run(
            [str(rclip), "--version"], capture_output=True, text=True
        ).stdout.strip()
        export_rclip_model(datadir)
        files = corpus.photos(args.photos, args.n or None)
        sets = [("main", linked_set(files, scratch / "set-main"))]
        if not args.skip_12mp:
            log(f"making/reusing 12 MP copies in {cache} ...")
            sets.append(("12mp", linked_set(corpus.make_12mp(files, cache), scratch / "set-12mp")))
        tools = Tools(rclip, ensure_imgsearch_interpreter(args.imgsearch_venv), datadir, scratch)
        r["startup_s_rclip_venv"] = startup_s(str(args.rclip_venv / "bin" / "python"), tools.env)
        r["startup_s_imgsearch_venv"] = startup_s(
            str(args.imgsearch_venv / "bin" / "python"), tools.imgsearch_env
        )
        r["startup_s_base_interpreter"] = startup_s(sys.executable, tools.env)
        # warm-up (untimed): imgsearch's one-off ONNX exports of this model, page cache
        tools.fresh("imgsearch", linked_set(files[:4], scratch / "warm"))
        for label, folder in sets:
            corpus.warm_page_cache(sorted(folder.iterdir()))
            r[f"{label}_images"] = len(list(folder.iterdir()))
            measure(tools, label, folder, args.rounds, r)
    finally:
        r["loadavg_end"] = os.getloadavg()[0]
        shutil.rmtree(scratch, ignore_errors=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
        out = args.out or Path(__file__).resolve().parent / "results" / f"peers-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2, sort_keys=True) + "\n")
        for key in sorted(k for k in r if not k.endswith("_runs")):
            value = r[key]
            print(f"{key:<42} {value:.3g}" if isinstance(value, float) else f"{key:<42} {value}")
        log(f"wrote {out}")
    return 0


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent,
    )  # fmt: skip
    return out.stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
