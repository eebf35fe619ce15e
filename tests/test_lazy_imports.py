"""Commands that need no model must not pay for importing torch/open_clip (~4 s here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import sys
from click.testing import CliRunner
from imgsearch.cli import cli
result = CliRunner().invoke(cli, {args!r})
heavy = sorted(m for m in ("torch", "open_clip", "torchvision") if m in sys.modules)
print(result.exit_code, heavy)
"""


@pytest.mark.parametrize("args", [["--help"], ["index", "--help"], ["stats"], ["errors"]])
def test_no_torch_on_light_paths(args, tmp_path):
    code = PROBE.format(args=args + ["--library", str(tmp_path)] if args[0] != "--help" else args)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr


def test_importing_the_package_is_cheap():
    code = (
        "import sys, imgsearch, imgsearch.cli\n"
        "heavy = ('torch', 'open_clip', 'faiss', 'sqlalchemy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_text_query_needs_neither_torch_nor_sqlalchemy(run, tiny_model, pictures, isolated_env):
    """A cold `imgsearch query` runs on the exported ONNX text tower, numpy and stdlib sqlite3."""
    run("index", pictures[0].parent, "--model", tiny_model)
    assert (isolated_env / "text-encoder" / "manifest.json").is_file()
    code = PROBE.format(args=["query", "a dog", "--library", str(isolated_env), "--json"])
    # nor FAISS (a small library's flat file is read with numpy: imgsearch/exactindex.py) nor
    # the `regex` module (plain text pre-tokenises with `re`: imgsearch/tokenizer.py) nor
    # platformdirs on Linux (imgsearch/userdirs.py)
    late = ("sqlalchemy", "alembic", "faiss", "regex")
    late += ("platformdirs",) if sys.platform.startswith("linux") else ()
    code += f"heavy += [m for m in {late!r} if m in sys.modules]\n"
    code += "print(heavy)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "0 []" and second == "[]", out.stdout + out.stderr


def test_unchanged_reindex_imports_no_model_decoder_or_sqlalchemy(
    run, tiny_model, pictures, isolated_env
):
    """Re-indexing an unchanged tree costs a stat per file: no torch, PIL or SQLAlchemy, and no
    numpy, FAISS, tokenizer or process pool either (together a third of such a run)."""
    run("index", pictures[0].parent, "--model", tiny_model)
    code = PROBE.format(args=["index", str(pictures[0].parent), "--library", str(isolated_env)])
    heavy = ("sqlalchemy", "PIL", "onnxruntime", "numpy", "faiss", "regex", "multiprocessing")
    code += f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "0 []" and second == "[]", out.stdout + out.stderr


def test_lazy_module_loads_on_first_attribute():
    """`np = lazy.numpy` stands in for numpy until used, then is numpy's own attributes."""
    code = (
        "import sys\n"
        "from imgsearch.lazy import LazyModule\n"
        "m = LazyModule('json')\n"
        "before = 'json' in sys.modules\n"
        "out = m.dumps([1])\n"
        "print(before, 'json' in sys.modules, out, m.dumps is sys.modules['json'].dumps)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "[1]", "True"]


MAIN = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("shutdown ran\\n"))
class Teardown:  # a module global's finaliser runs in the interpreter's teardown only
    def __del__(self):
        sys.stderr.write("teardown ran\\n")
keep = Teardown()
sys.argv = ["imgsearch", *{args!r}]
from imgsearch.cli import main
main()
"""


def test_finished_commands_skip_the_interpreters_teardown_and_keep_their_output(
    run, tiny_model, pictures, isolated_env
):
    """`query` ends without the interpreter's shutdown (~40 ms of a cold query), and a
    successful `index` without its teardown (~0.2 s) after running the atexit clean-ups:
    every line printed still arrives through a pipe, with its exit status. A write command
    that failed keeps the normal shutdown."""
    run("index", pictures[0].parent, "--model", tiny_model)

    def main(*args: str) -> subprocess.CompletedProcess[str]:
        code = MAIN.format(args=[*args, "--library", str(isolated_env)])
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    done = main("query", "a red circle", "-k", "500", "--json")
    assert done.returncode == 0 and "shutdown ran" not in done.stderr, done.stderr
    assert "teardown ran" not in done.stderr
    assert len(json.loads(done.stdout)) == len(pictures)  # all of it, flushed
    failed = main("similar", str(isolated_env / "no-such.jpg"))
    assert failed.returncode == 1 and "no such file" in failed.stderr
    assert "shutdown ran" not in failed.stderr  # read-only: an error leaves the same way
    written = main("index", str(pictures[0].parent))
    assert written.returncode == 0, written.stderr
    assert "unchanged" in written.stderr  # its summary line, flushed
    assert "shutdown ran" in written.stderr and "teardown ran" not in written.stderr
    refused = main("index", str(isolated_env / "no-such-folder"))
    assert refused.returncode == 1 and "no-such-folder" in refused.stderr
    assert "shutdown ran" in refused.stderr and "teardown ran" in refused.stderr
