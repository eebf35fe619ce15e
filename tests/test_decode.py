"""imgsearch.decode: model input like open_clip, every mode to RGB, a reason for every bad file."""

from __future__ import annotations

import functools
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgsearch.decode as decode_module
from imgsearch.decode import (
    Decoded,
    DecodeError,
    DecodeFailed,
    decode,
    draft_target,
    open_image,
    psnr,
    to_model_input,
)
from imgsearch.exif import parse_exif_datetime
from imgsearch.modelspec import PreprocessSpec
from indexer.walk import fingerprint, scan
from tests.support.corpus import (
    REPO_ROOT,
    CorpusCase,
    rewrite,
    run_unprivileged,
    world_readable_corpus,
)
from tests.support.photos import MAX_PIXELS, MEAN, SPEC, STD, needs_photos  # noqa: E402
from tests.support.photos import SHARED_PHOTOS as PHOTOS  # noqa: E402

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def corpus() -> Iterator[tuple[Path, list[CorpusCase]]]:
    with world_readable_corpus() as built:
        yield built


def _decode(path: Path | str, **kwargs: object) -> Decoded | DecodeFailed:
    return decode(str(path), SPEC, max_pixels=MAX_PIXELS, **kwargs)  # type: ignore[arg-type]


def _ok(path: Path | str, **kwargs: object) -> Decoded:
    result = _decode(path, **kwargs)
    assert isinstance(result, Decoded), result
    return result


# --- the hostile corpus -----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_walk_then_decode_the_hostile_corpus(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, cases = corpus
    by_rel = {c.relpath: c for c in cases}
    by_real = {os.path.realpath(root / c.relpath): c for c in cases}  # symlinks: their targets
    wrong = []
    for entry in scan(root):
        case = by_rel.get(os.path.relpath(entry.path, root)) or by_real[entry.path]
        result = _decode(entry.path)
        valid = case.valid or (case.unprivileged and IS_ROOT)  # root reads chmod-000 files
        if valid and not isinstance(result, Decoded):
            wrong.append((case.relpath, result))
        elif not valid and not (
            isinstance(result, DecodeFailed) and case.expect_reason in result.reason
        ):
            wrong.append((case.relpath, case.expect_reason, result))
    assert wrong == []


@pytest.mark.timeout(60)
def test_files_the_walk_skips_fail_with_a_reason(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, _ = corpus
    assert _decode(root / "pipe.jpg") == DecodeFailed(
        str(root / "pipe.jpg"), "not a regular file (named pipe)"
    )
    broken = _decode(root / "broken_link.jpg")
    assert isinstance(broken, DecodeFailed) and broken.reason.startswith("broken symbolic link")
    folder = _decode(root / "photo.jpg")
    assert isinstance(folder, DecodeFailed) and folder.reason == "not a regular file (folder)"
    assert isinstance(_decode(root / "notes.txt"), Decoded)  # content decides, not the name


def test_reasons_are_specific(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, _ = corpus
    reasons = {
        name: getattr(_decode(root / name), "reason", None)
        for name in ("empty.jpg", "truncated.jpg", "truncated.png", "random.jpg", "bomb.png")
    }
    assert reasons == {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated image data",
        "truncated.png": "truncated image data",
        "random.jpg": "not an image (unrecognised content)",
        "bomb.png": "too large: 30000x30000 = 900.0 MP exceeds max_pixels (200.0 MP)",
    }
    assert _decode(root / "drawing.png").reason == "unsupported format: SVG"  # type: ignore[union-attr]
    header = _decode(root / "header.png")
    assert isinstance(header, DecodeFailed) and header.reason.startswith("corrupt or truncated PNG")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(
    corpus: tuple[Path, list[CorpusCase]], orientation: int
) -> None:
    root, _ = corpus
    path = root / f"orientation_{orientation}.jpg"
    image = np.asarray(open_image(str(path), max_pixels=MAX_PIXELS))
    assert image.shape == (48, 80, 3)
    red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
    assert red[:16, :28].all() and not red[:, 36:].any() and not red[24:].any()
    result = _ok(path)
    assert (result.width, result.height) == (80, 48)
    assert result.pixels[0, 0, 0] > 200 and result.pixels[0, 0, 1] < 60
    assert result.pixels[-1, -1, 0] < 100


def test_corrupt_exif_decodes_without_orientation(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, _ = corpus
    result = _ok(root / "corrupt_exif.jpg")
    assert (result.width, result.height, result.meta.orientation) == (64, 48, 1)
    assert result.meta.taken_at_source == "mtime" and result.taken_at == result.meta.taken_at


def _rgb(corpus: tuple[Path, list[CorpusCase]], name: str) -> np.ndarray:
    return np.asarray(open_image(str(corpus[0] / name), max_pixels=MAX_PIXELS)).astype(int)


def test_modes_become_rgb(corpus: tuple[Path, list[CorpusCase]]) -> None:
    grey16 = _rgb(corpus, "grey16.png")
    stored = np.asarray(Image.open(corpus[0] / "grey16.png")).astype(float)
    assert stored.max() == 65535
    assert np.abs(grey16[..., 0] - stored / 257).max() <= 0.5  # scaled, not clipped at 255
    assert (grey16[..., 0] == grey16[..., 2]).all()
    assert np.abs(_rgb(corpus, "cmyk.jpg")[15, 20] - (0, 255, 255)).max() < 10
    palette = _rgb(corpus, "palette_transparent.png")
    assert palette[:, :16].tolist() == [[[255, 0, 0]] * 16] * 32
    assert palette[:, 16:].tolist() == [[[128, 128, 128]] * 16] * 32  # mid-grey background
    la = _rgb(corpus, "la.png")
    assert (la[:, :20] == 250).all() and (la[:, 20:] == 128).all()
    assert (_rgb(corpus, "rgba.png") == 128).all()
    for animated in ("animated.gif", "animated.webp"):
        first = _rgb(corpus, animated)
        assert np.abs(first - (255, 0, 0)).max() < 8, animated


def _made_in(mode: str) -> Image.Image:
    """A 30x20 picture of grey level 120 (white for '1') stored in `mode`."""
    grey = Image.new("L", (30, 20), 120)
    if mode == "1":
        return Image.new("1", (30, 20), 1)
    if mode == "I;16":  # what a 16-bit PNG gives
        return Image.fromarray(np.full((20, 30), 120 * 257, np.uint16))
    if mode == "F":  # floats in 0..1
        return Image.fromarray(np.full((20, 30), 120 / 255, np.float32))
    if mode in ("RGBa", "La"):
        return grey.convert("RGBA").convert(mode)
    return grey.convert(mode)


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "I", "I;16", "F", "YCbCr", "LAB", "HSV", "CMYK", "RGBa", "La"]
)
def test_every_pil_mode_converts(mode: str) -> None:
    image = _made_in(mode)
    assert image.mode == mode
    pixels = to_model_input(image, SPEC)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    expected = 255 if mode == "1" else 120
    assert np.abs(pixels.astype(int) - expected).max() <= 2, mode


# --- model input equals open_clip's ---------------------------------------------------------


def _open_clip_reference(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    from benchmarks.fidelity import clip_transform

    return clip_transform(spec)(image).numpy().transpose(1, 2, 0)


@functools.cache
def _equivalence_images() -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(7)
    images = [
        ("223x1000 noise", Image.fromarray(rng.integers(0, 256, (1000, 223, 3), np.uint8))),
        ("1000x223 noise", Image.fromarray(rng.integers(0, 256, (223, 1000, 3), np.uint8))),
        ("10x10 noise", Image.fromarray(rng.integers(0, 256, (10, 10, 3), np.uint8))),
        ("224x224 noise", Image.fromarray(rng.integers(0, 256, (224, 224, 3), np.uint8))),
    ]
    folder = PHOTOS / "imagenet-500"
    if folder.is_dir():
        for path in sorted(folder.glob("*.JPEG"))[::80]:
            images.append((path.name, open_image(str(path), max_pixels=MAX_PIXELS)))
        grey = images[-1][1].convert("L").convert("RGB")
        images.append(("grey photo", grey))
    return images


@pytest.mark.parametrize(
    "size, resize_mode, interpolation",
    [
        ((224, 224), "shortest", "bicubic"),
        ((224, 224), "shortest", "bilinear"),
        ((256, 256), "squash", "bicubic"),
        ((224, 224), "longest", "bicubic"),
        ((224, 336), "shortest", "bilinear"),  # non-square: open_clip forces bicubic
        ((384, 256), "longest", "bilinear"),
    ],
)
def test_model_input_matches_open_clip(
    size: tuple[int, int], resize_mode: str, interpolation: str
) -> None:
    """Measured: bit-exact (0/255) for every image and mode; fill_color 77 shows in padding."""
    spec = PreprocessSpec(size, MEAN, STD, interpolation, resize_mode, fill_color=77)
    mean, std = np.array(MEAN), np.array(STD)
    for name, image in _equivalence_images():
        ours = to_model_input(image, spec)
        assert ours.shape == (*size, 3)
        theirs = _open_clip_reference(image, spec) * std + mean  # back to 0..1
        error = np.abs(ours / 255.0 - theirs).max() * 255
        assert error < 1e-3, f"{name}: {error:.3f}/255 off"


@pytest.mark.parametrize("shape", [(20, 400), (700, 30), (6, 300)])
def test_extreme_aspect_ratio_stays_close(shape: tuple[int, int]) -> None:
    """Past 16x the input area only the crop is resampled: measured <= 2/255 from open_clip."""
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (*shape, 3), np.uint8))
    for spec in (SPEC, PreprocessSpec((384, 256), MEAN, STD)):
        ours = to_model_input(image, spec) / 255.0
        theirs = _open_clip_reference(image, spec) * np.array(STD) + np.array(MEAN)
        assert np.abs(ours - theirs).max() * 255 <= 2.0 + 1e-4


def test_extreme_aspect_ratio_is_cheap() -> None:
    """10x20000 would be resized to 448000x224 (300 MB) by open_clip; here it takes ms."""
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (10, 20000, 3), np.uint8))
    start = time.perf_counter()
    pixels = to_model_input(image, SPEC)
    assert time.perf_counter() - start < 0.5
    assert pixels.shape == (224, 224, 3) and pixels.std() > 20  # real content, not padding


# --- draft: speed without losing fidelity -----------------------------------------------------


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real >= 3 MP camera JPEGs plus two photos upscaled to 4000 px (quality 90)."""
    if not PHOTOS.is_dir():
        pytest.skip(f"shared test photos not found at {PHOTOS} (../shared/photos)")
    camera = PHOTOS / "formats" / "camera" / "jpg"
    paths = [
        camera / name
        for name in ("mobile/jolla.jpg", "hdr/iphone_hdr_YES.jpg", "tests/42_IndexError.jpg")
    ]
    paths += [camera / "mobile/HMD_Nokia_8.3_5G.jpg", camera / "hdr/canon_hdr_NO.jpg"]
    folder = tmp_path_factory.mktemp("12mp")
    for source in sorted((PHOTOS / "imagenet-500").glob("*.JPEG"))[100:102]:
        image = Image.open(source).convert("RGB")
        scale = 4000 / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        target = folder / f"{source.stem}.jpg"
        image.resize(size, Image.Resampling.BICUBIC).save(target, quality=90)
        paths.append(target)
    return paths


@needs_photos
@pytest.mark.timeout(120)
def test_draft_keeps_fidelity(large_jpegs: list[Path]) -> None:
    """PSNR of drafted vs full decode: measured min ~49 dB here; floor 30 dB, median 35 dB."""
    values = []
    for path in large_jpegs:
        full = _ok(path, draft=False)
        drafted_image = open_image(str(path), max_pixels=MAX_PIXELS, draft_to=draft_target(SPEC))
        assert max(drafted_image.size) < max(full.width, full.height)  # it did reduce
        drafted = _ok(path)
        assert (drafted.width, drafted.height) == (full.width, full.height)  # real size kept
        values.append(psnr(full.pixels, drafted.pixels))
    assert min(values) >= 30 and statistics.median(values) >= 35, values


def test_draft_target_keeps_twice_the_model_input() -> None:
    assert draft_target(SPEC) == (448, 448)
    assert draft_target(PreprocessSpec((384, 256), MEAN, STD)) == (768, 768)


def test_psnr() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(48.13, abs=0.01)
    with pytest.raises(ValueError):
        psnr(a, a[:2])


# --- real files from ../shared/photos/formats --------------------------------------------------

# Files named after the EXIF-parser bugs they caused, "invalid" ones (bad XMP/EXIF) and a JPEG
# with corrupt entropy data: all are usable pictures, and Pillow/libjpeg recover them.
KNOWN_HOSTILE = [
    "camera/jpg/corrupted.jpg",
    *(f"camera/jpg/invalid/image{n:05}.jpg" for n in (971, 1088, 1137, 1551, 1713, 1980, 2206)),
    "camera/jpg/tests/35-empty.jpg",
    "camera/jpg/tests/36-memory_error.jpg",
    "camera/jpg/tests/87_OSError.jpg",
]


@needs_photos
@pytest.mark.timeout(120)
def test_every_file_in_formats_decodes() -> None:
    formats = PHOTOS / "formats"
    failed = {
        os.path.relpath(entry.path, formats): result.reason
        for entry in scan(formats)
        if isinstance(result := _decode(entry.path), DecodeFailed)
    }
    assert failed == {}
    for name in KNOWN_HOSTILE:
        assert isinstance(_decode(formats / name), Decoded), name


@needs_photos
def test_heic_and_avif_decode_with_real_size() -> None:
    sizes = {
        "heif/example.heic": (1280, 854),
        "heif/example.avif": (800, 533),
        "camera/heic/IMG_5195.HEIC": (2566, 3313),
    }
    for name, size in sizes.items():
        result = _ok(PHOTOS / "formats" / name)
        assert (result.width, result.height) == size
    heic = _ok(PHOTOS / "formats/camera/heic/IMG_5195.HEIC")
    assert heic.taken_at == "2021-04-11T15:47:53.054-05:00"  # with SubSecTime and OffsetTime


_DIHEDRAL = [
    lambda a: a,
    np.fliplr,
    np.flipud,
    lambda a: np.rot90(a, 2),
    lambda a: np.ascontiguousarray(np.transpose(a, (1, 0, 2))),
    lambda a: np.rot90(a, 1),
    lambda a: np.rot90(a, 3),
    lambda a: np.rot90(np.fliplr(a), 1),
]


@needs_photos
@pytest.mark.parametrize(
    "pattern",
    [
        "orientation/Landscape_*.jpg",
        "orientation/Portrait_*.jpg",
        "camera/jpg/orientation/landscape_*.jpg",
        "camera/jpg/orientation/portrait_*.jpg",
    ],
)
def test_orientation_sets_decode_upright(pattern: str) -> None:
    """Each file matches the _1 reference better unchanged than flipped or rotated."""
    paths = sorted((PHOTOS / "formats").glob(pattern))
    assert len(paths) >= 8
    reference = next(_ok(p) for p in paths if p.stem.endswith("_1"))
    for path in paths:
        result = _ok(path)
        assert (result.width, result.height) == (reference.width, reference.height), path.name
        scores = [psnr(t(reference.pixels), result.pixels) for t in _DIHEDRAL]
        assert scores[0] == max(scores) and scores[0] > 20, (path.name, scores)


@needs_photos
def test_taken_at_prefers_date_time_original() -> None:
    jpg = PHOTOS / "formats" / "camera" / "jpg"
    assert _ok(jpg / "Canon_40D.jpg").taken_at == "2008-05-30T15:56:01"  # DateTime is 07-31
    assert _ok(jpg / "long_description.jpg").taken_at == "2008-07-31T10:50:00"  # DateTime only
    assert _ok(jpg / "PaintTool_sample.jpg").meta.taken_at_source == "mtime"  # no date at all


def test_parse_exif_datetime() -> None:
    assert parse_exif_datetime("2008:05:30 15:56:01\x00") == "2008-05-30T15:56:01"
    assert parse_exif_datetime(b"2008-05-30 15:56:01") == "2008-05-30T15:56:01"
    assert parse_exif_datetime("0000:00:00 00:00:00") is None
    assert parse_exif_datetime("2008:13:40 99:00:00") is None
    assert parse_exif_datetime("    :  :     :  :  ") is None
    assert parse_exif_datetime(20080530) is None


# --- safety and failure paths -----------------------------------------------------------------


def test_decode_records_what_it_read(corpus: tuple[Path, list[CorpusCase]]) -> None:
    path = corpus[0] / "plain.jpg"
    result = _ok(path)
    st = os.stat(path)
    assert (result.size, result.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert result.fingerprint == fingerprint(str(path), st.st_size)
    assert (result.width, result.height, result.path) == (120, 90, str(path))
    assert result.pixels.shape == (224, 224, 3) and result.pixels.dtype == np.uint8


def test_max_pixels_applies_to_the_declared_size(corpus: tuple[Path, list[CorpusCase]]) -> None:
    result = decode(str(corpus[0] / "plain.jpg"), SPEC, max_pixels=10_000)
    assert result == DecodeFailed(
        str(corpus[0] / "plain.jpg"),
        "too large: 120x90 = 10800 pixels exceeds max_pixels (10000 pixels)",
    )


def test_vanished_file(tmp_path: Path) -> None:
    assert _decode(tmp_path / "gone.jpg") == DecodeFailed(
        str(tmp_path / "gone.jpg"), "file disappeared before it could be read"
    )


def test_file_changed_while_being_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "busy.png"
    Image.new("RGB", (40, 30), "red").save(path)
    real = decode_module._to_rgb

    def rewrite_meanwhile(image: Image.Image) -> Image.Image:
        rewrite(path)  # an editor saves over the file mid-decode
        return real(image)

    monkeypatch.setattr(decode_module, "_to_rgb", rewrite_meanwhile)
    assert _decode(path) == DecodeFailed(str(path), "file changed while it was being read")


def test_unexpected_errors_become_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (40, 30), "red").save(path)

    def boom(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
        raise RuntimeError("boom")

    monkeypatch.setattr(decode_module, "to_model_input", boom)
    assert _decode(path) == DecodeFailed(str(path), "unexpected error: RuntimeError: boom")


def test_open_image_raises_decode_error_that_pickles(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DecodeError) as info:
        open_image(str(path), max_pixels=MAX_PIXELS)
    assert str(info.value) == f"{path}: empty file"
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.path, clone.reason) == (str(path), "empty file")


@pytest.mark.timeout(60)
def test_permission_denied_for_an_unprivileged_user(
    corpus: tuple[Path, list[CorpusCase]],
) -> None:
    root = corpus[0]
    names = ["unreadable.jpg", "locked/secret.jpg", "plain.jpg"]
    code = (
        "from imgsearch.modelspec import PreprocessSpec\n"
        "spec = PreprocessSpec((224, 224), (0.5,) * 3, (0.5,) * 3)\n"
        f"names = {names!r}\n"
        f"results = [imgsearch.decode.decode(os.path.join({str(root)!r}, n), spec, "
        "max_pixels=10**8) for n in names]\n"
        "print(json.dumps([getattr(r, 'reason', 'ok') for r in results]))\n"
    )
    result = run_unprivileged(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["permission denied", "permission denied", "ok"]


def test_importing_decode_does_not_import_torch() -> None:
    code = "import sys, imgsearch.decode, indexer.walk; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_results_pickle_for_the_worker_pool(corpus: tuple[Path, list[CorpusCase]]) -> None:
    for name in ("plain.jpg", "empty.jpg"):
        result = _decode(corpus[0] / name)
        clone = pickle.loads(pickle.dumps(result))
        assert type(clone) is type(result) and clone.path == result.path
