"""Libraries filled through the library's own storage path without embedding every image.

`synthetic_library`: N clustered vectors (benchmarks.synth) stored with Library.store, the FAISS
file saved with Library.ann.save and the text encoder exported as `imgsearch index`
does, so queries take exactly the path they take on a real library of that size.

`seed_library`: the rows a first `imgsearch index TREE` would have written for a real tree
(path, size, mtime, fingerprint), with stand-in vectors, so that a second run finds every file
unchanged; the re-index benchmark then times that second run.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.synth import Mixture, cached_sample

if TYPE_CHECKING:
    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder
    from imgsearch.modelspec import ModelSpec
    from imgsearch.vectors import IndexParams

STORE_BATCH = 2000


def _index_params(settings: Settings) -> IndexParams:
    from imgsearch.vectors import IndexParams

    return IndexParams.from_settings(settings)


def library_key(n: int, settings: Settings, mix: Mixture) -> str:
    """Cache key: what decides the library's content and FAISS file."""
    from imgsearch.library import SCHEMA_HEAD

    text = repr((n, mix, _index_params(settings), SCHEMA_HEAD))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def is_complete(path: Path, n: int) -> bool:
    """A cached synthetic library is usable: n rows, saved FAISS file, exported text encoder."""
    from imgsearch import textonnx
    from imgsearch.library import TEXT_ENCODER_DIR, Library

    if not (path / "library.db").is_file():
        return False
    with Library.open(path) as lib:
        meta = lib.meta()
        return (
            lib.count() == n
            and meta.get("faiss_generation") == meta.get("generation")
            and textonnx.exported(path / TEXT_ENCODER_DIR)
        )


def synthetic_library(
    path: Path, n: int, encoder: Encoder, settings: Settings, *, mix: Mixture, cache: Path
) -> Path:
    """Create (or replace) a library of `n` synthetic images at `path`; see the module doc."""
    from imgsearch import textonnx
    from imgsearch.library import TEXT_ENCODER_DIR, ImageRecord, Library

    if path.exists():
        shutil.rmtree(path)
    vectors = cached_sample(mix, n, seed=0, cache=cache)
    lib = Library.open(path, create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(encoder.spec)
        for start in range(0, n, STORE_BATCH):
            records = [
                ImageRecord(
                    path=f"/synthetic/{i // 1000:04d}/{i:07d}.jpg",
                    size=100_000 + i,
                    mtime_ns=1_700_000_000_000_000_000 + i,
                    fingerprint=f"{i:032x}",
                    width=640,
                    height=480,
                    taken_at=None,
                    vector=np.asarray(vectors[i], dtype=np.float32),
                )
                for i in range(start, min(n, start + STORE_BATCH))
            ]
            lib.store(records, [])
        lib.ann.save(_index_params(settings))
        textonnx.export_text_encoder(encoder.model, encoder.tokenizer, path / TEXT_ENCODER_DIR)
    return path


def seed_library(path: Path, tree: Path, spec: ModelSpec, settings: Settings) -> int:
    """Rows for every image under `tree` as a finished `imgsearch index TREE` leaves them."""
    from imgsearch.library import ImageRecord, Library
    from indexer.walk import fingerprint, scan

    if path.exists():
        shutil.rmtree(path)
    entries = list(
        scan(
            [str(tree)], skip_hidden=settings.skip_hidden, follow_symlinks=settings.follow_symlinks
        )
    )
    rng = np.random.default_rng(11)
    lib = Library.open(path, create=True)
    with lib, lib.write_lock():
        lib.set_model_spec(spec)
        for start in range(0, len(entries), STORE_BATCH):
            part = entries[start : start + STORE_BATCH]
            vecs = rng.standard_normal((len(part), spec.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            lib.store(
                [
                    ImageRecord(
                        e.path, e.size, e.mtime_ns, fingerprint(e.path, e.size), 64, 64, None, v
                    )
                    for e, v in zip(part, vecs)
                ],
                [],
            )
        lib.ann.save(_index_params(settings))
    return len(entries)
