"""Imported only by the decode forkserver's preload (indexer/pipeline.py), never by the indexer:
the forkserver dies with the run that started it, and leaves Ctrl-C to it (the workers it
forks inherit that). It is the first module the server imports, before numpy: one decoder per
core is the design, so each runs its BLAS on one thread (the pHash's matrix products spawned
two threads per worker otherwise, and halved the decode rate, benchmarks/ONNX.md)."""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

from indexer.lifeline import die_with_parent, ignore_interrupts  # noqa: E402

ignore_interrupts()
die_with_parent()
