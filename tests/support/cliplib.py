"""A shapes library indexed once per test module with the tiny trained CLIP, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.harness import index_in_process, isolated_settings
from tests.support.shapes import write_pictures

Pictures = list[tuple[Path, str, str]]


def build_shapes_library(
    root: Path, cache: Path, model: str, *, per_class: int, seed: int
) -> tuple[Path, Pictures]:
    """Index `per_class` pictures of each of the 20 classes into root/library; returns both."""
    pictures = write_pictures(root / "shapes", per_class=per_class, seed=seed)
    library = root / "library"
    with isolated_settings(root, cache, library):
        index_in_process(root / "shapes", "--model", model, "-q")
    return library, pictures


def use_library(template: Path, dest: Path) -> None:
    """Copy a built library to the test's own library folder (tests may change it)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest)
