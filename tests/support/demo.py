"""Make the README's demo: `python -m tests.support.demo /tmp/demo` writes shapes/ and tinyclip/.

shapes/ holds 60 generated pictures (3 of each of 20 coloured shapes); tinyclip/ is a tiny CLIP
trained on such pictures (tests/support/tinyclip.py, about a minute of CPU once; with
IMGSEARCH_TEST_CACHE set it is trained once per machine), saved as an open_clip `local-dir:`
model. No download is needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_SEED = 7


def make_demo(dest: Path) -> tuple[Path, Path]:
    """(shapes folder, model folder) under `dest`."""
    from tests.support.shapes import write_pictures
    from tests.support.tinyclip import train_tiny_clip

    shapes = dest / "shapes"
    write_pictures(shapes, per_class=3, seed=DEMO_SEED)
    model = train_tiny_clip(dest / "tinyclip")
    return shapes, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.demo", description=__doc__)
    parser.add_argument("dest", type=Path, help="folder to write shapes/ and tinyclip/ into")
    args = parser.parse_args(argv)
    shapes, model = make_demo(args.dest.resolve())
    print(f"pictures: {shapes}\nmodel:    local-dir:{model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
