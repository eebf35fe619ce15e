"""Thumbnails: oriented, stripped of metadata, drafted JPEGs, HEIC, made once, bounded cache."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch import thumbs
from imgsearch.library import ImageDetail

MAX_PIXELS = 200_000_000


def detail(path: Path, image_id: int = 1) -> ImageDetail:
    st = path.stat()
    return ImageDetail(image_id, str(path), st.st_size, st.st_mtime_ns, "f" * 32, 0, 0, None, "")


def webp(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    return image


def test_a_thumbnail_fits_its_box_and_keeps_the_aspect(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (2000, 1000), "red").save(path)
    image = webp(thumbs.render(str(path), 256, max_pixels=MAX_PIXELS))
    assert image.size == (256, 128)
    assert image.convert("RGB").getpixel((100, 60))[0] > 200


@pytest.mark.photos
def test_exif_orientation_is_applied(photos):
    folder = photos / "formats" / "orientation"
    for kind in ("Landscape", "Portrait"):
        upright = webp(thumbs.render(str(folder / f"{kind}_1.jpg"), 256, max_pixels=MAX_PIXELS))
        ref = np.asarray(upright.convert("L"), dtype=np.float32)
        assert (upright.width > upright.height) == (kind == "Landscape")
        for n in range(2, 9):
            image = webp(thumbs.render(str(folder / f"{kind}_{n}.jpg"), 256, max_pixels=MAX_PIXELS))
            assert image.size == upright.size, (kind, n)
            diff = np.abs(np.asarray(image.convert("L"), dtype=np.float32) - ref).mean()
            assert diff < 12, (kind, n, diff)  # the same picture, the same way up


@pytest.mark.photos
def test_camera_metadata_is_stripped(photos):
    jpgs = sorted((photos / "formats" / "camera" / "jpg").glob("*.[jJ][pP][gG]"))
    with_exif = [p for p in jpgs if Image.open(p).getexif()]
    assert with_exif, "no camera JPEG with EXIF in the shared photos"
    image = webp(thumbs.render(str(with_exif[0]), 256, max_pixels=MAX_PIXELS))
    assert not image.getexif()
    assert not {"exif", "icc_profile", "xmp"} & set(image.info)


@pytest.mark.photos
def test_heic_works(photos):
    image = webp(
        thumbs.render(str(photos / "formats" / "heif" / "example.heic"), 256, max_pixels=MAX_PIXELS)
    )
    assert max(image.size) == 256


def test_jpegs_decode_in_draft_mode(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), "blue").save(path, quality=80)
    asked = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real(self, mode, size)
        asked.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    image = webp(thumbs.render(str(path), 256, max_pixels=MAX_PIXELS))
    assert image.size == (256, 192)
    assert asked and asked[0][0] == (256, 256)
    assert asked[0][1] == (500, 375)  # decoded at 1/8 scale, not 12 MP


def test_a_hostile_file_is_a_thumbnail_error(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_bytes(b"#!/bin/sh\necho hi\n")
    with pytest.raises(thumbs.ThumbnailError, match="not an image"):
        thumbs.render(str(path), 256, max_pixels=MAX_PIXELS)
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    with pytest.raises(thumbs.ThumbnailError, match="too large"):
        thumbs.render(str(big), 256, max_pixels=1000)


def test_the_cache_makes_each_thumbnail_once(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.new("RGB", (600, 400), "green").save(path)
    made = []
    real = thumbs.render
    gate = threading.Event()

    def counting(p, px, *, max_pixels):
        gate.wait(5)
        made.append((p, px))
        return real(p, px, max_pixels=max_pixels)

    monkeypatch.setattr(thumbs, "render", counting)
    cache = thumbs.ThumbCache(tmp_path / "cache", max_bytes=10**8, max_pixels=MAX_PIXELS)
    image = detail(path)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.file(image, 256))) for _ in range(6)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and made == [(str(path), 256)]
    assert cache.file(image, 256) == results[0] and len(made) == 1
    assert results[0].parent.parent == tmp_path / "cache"
    cache.file(image, 1440)
    assert len(made) == 2
    cache.close()


def test_the_key_changes_with_the_content(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (60, 40), "green").save(path)
    before = thumbs.content_key(detail(path), 256)
    assert before != thumbs.content_key(detail(path), 1440)
    os.utime(path, ns=(1, 1))
    assert thumbs.content_key(detail(path), 256) != before


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(tmp_path):
    cache = thumbs.ThumbCache(tmp_path / "cache", max_bytes=10**8, max_pixels=MAX_PIXELS)
    rng = np.random.default_rng(0)
    files = []
    for i in range(6):
        path = tmp_path / f"noise_{i}.png"
        Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(path)
        files.append(cache.file(detail(path, i), 256))
    each = max(f.stat().st_size for f in files)
    later = time.time_ns() + 3600 * 10**9
    os.utime(files[0], ns=(later, later))  # the first one was used last
    cache.max_bytes = 4 * each
    assert cache.evict() >= 2
    assert files[0].exists()
    assert sum(f.exists() for f in files) <= 3
    assert cache.bytes <= 4 * each * thumbs.EVICT_TO
    cache.close()
    reopened = thumbs.ThumbCache(tmp_path / "cache", max_bytes=4 * each, max_pixels=MAX_PIXELS)
    assert reopened.bytes == sum(f.stat().st_size for f in files if f.exists())
    reopened.close()


def test_an_unknown_size_is_refused(tmp_path):
    cache = thumbs.ThumbCache(tmp_path / "cache", max_bytes=10**6, max_pixels=MAX_PIXELS)
    with pytest.raises(ValueError):
        cache.file(detail(tmp_path), 100)
    cache.close()
