"""Real photos (../shared/photos): every readable file is indexed, every broken one reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from imgsearch.library import Library
from indexer.walk import IMAGE_EXTENSIONS


def pillow_can_read(path: Path) -> bool:
    """An oracle independent of imgsearch.decode: plain Pillow (+ pillow-heif) decode."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    try:
        with Image.open(path) as img:
            ImageOps.exif_transpose(img).convert("RGB").load()
        return True
    except Exception:
        return False


@pytest.mark.timeout(600)
def test_index_all_shared_photos(run, tiny_model, photos, isolated_env, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_WORKERS", "2")
    files = sorted(
        p
        for p in photos.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    assert len(files) >= 600
    readable = {str(p) for p in files if pillow_can_read(p)}
    result = run("index", photos, "--model", tiny_model, "--batch-size", "64")

    with Library.open(isolated_env) as lib:
        rows = lib.known_files()
    ok = {p for p, row in rows.items() if row.status == "ok"}
    errors = {r["path"]: r["reason"] for r in json.loads(run("errors", "--json").stdout)}
    assert readable <= ok, sorted(readable - ok)[:5]
    assert ok | set(errors) == {str(p) for p in files}
    for path, reason in errors.items():
        assert reason and f"skipping {path}: {reason}" in result.stderr
    assert f"{len(ok)} added" in result.stderr

    # orientation: all 18 orientation samples are stored upright with the same shape per set
    with Library.open(isolated_env) as lib:
        shapes = {
            i.path: (i.width, i.height) for i in lib.info(r.id for r in rows.values()).values()
        }
    for kind in ("Landscape", "Portrait"):
        sizes = {shapes[str(p)] for p in (photos / "formats" / "orientation").glob(f"{kind}_*.jpg")}
        assert len(sizes) == 1, (kind, sizes)
        ((w, h),) = sizes
        assert (w > h) == (kind == "Landscape")
