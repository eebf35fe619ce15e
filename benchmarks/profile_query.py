"""Where a cold `imgsearch query` spends its time, step by step, in this fresh process.

    python benchmarks/profile_query.py LIBRARY "a dog on a beach"

Prints one JSON object of seconds per step (the same calls `imgsearch query` makes, in order).
Nothing is imported before the clock starts except the standard library.
"""

from __future__ import annotations

import json
import sys
import time


def main(library: str, text: str) -> dict[str, float]:
    steps: dict[str, float] = {}
    last = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[name] = round(now - last, 4)
        last = now

    import imgsearch.cli  # noqa: F401  (click, config, output: what every command imports)

    mark("import_cli")
    from imgsearch import config

    settings = config.resolve(overrides={"library": library})
    mark("resolve_settings")
    from imgsearch.search import Searcher  # numpy, sqlalchemy, library

    mark("import_search")
    try:  # as the CLI opens it (imgsearch.cli._searcher)
        searcher = Searcher(settings.library_path, settings=settings, one_shot=True)
    except TypeError:  # a Searcher without the one_shot option
        searcher = Searcher(settings.library_path, settings=settings)
    mark("open_library")
    import onnxruntime  # noqa: F401

    mark("import_onnxruntime")
    searcher._text = searcher._load_text_encoder()
    mark("load_text_encoder")
    vector = searcher.embed_text(text)
    mark("embed_text")
    import faiss  # noqa: F401

    mark("import_faiss")
    s = settings
    from imgsearch.vectors import IndexParams

    searcher.library.ann.current(IndexParams.from_settings(s))
    mark("load_faiss_index")
    hits = searcher.nearest(vector).hits
    mark("search")
    from imgsearch.output import render_hits

    render_hits(hits, "table")
    searcher.close()
    mark("render_close")
    steps["total_in_process"] = round(sum(steps.values()), 4)
    return steps


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
