"""indexer.gpudecode: JPEGs decoded on a torch device match open_clip's preprocessing of the
full-size picture; everything else, and every bad file, gets the CPU path's answer."""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearch.decode import _TRANSPOSE, Decoded, DecodeFailed, decode, open_image, psnr
from imgsearch.decode import to_model_input as cpu_model_input
from imgsearch.errors import ImgsearchError
from imgsearch.modelspec import PreprocessSpec
from indexer.gpudecode import DeviceDecoder, JpegPayload, orient, prepare
from tests.support.photos import MAX_PIXELS, SPEC, needs_photos  # noqa: E402
from tests.support.photos import SHARED_PHOTOS as PHOTOS  # noqa: E402

# The issue's fidelity bar: model input vs open_clip's eval transform of the full-size decode.
MEDIAN_DB, MIN_DB = 35.0, 30.0


@pytest.fixture(autouse=True)
def _no_threads_fight() -> Iterator[None]:
    """One torch thread: CPU float resizes on a busy machine are faster without contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> str:
    import torch

    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here: the nvjpeg path is tested where a GPU is present")
    return str(request.param)


def reference(path: str | Path, spec: PreprocessSpec = SPEC) -> np.ndarray:
    """open_clip's eval transform of the full-size, EXIF-transposed decode, in uint8 space.

    imgsearch.decode.to_model_input on a full-size image is bit-exact with open_clip
    (tests/test_decode.py checks that), so no draft here and no open_clip import.
    """
    return cpu_model_input(open_image(str(path), max_pixels=MAX_PIXELS), spec)


def payloads(paths: list[Path], spec: PreprocessSpec = SPEC) -> list[JpegPayload]:
    prepared = [prepare(str(p), spec, max_pixels=MAX_PIXELS) for p in paths]
    wrong = [(p, r) for p, r in zip(paths, prepared) if not isinstance(r, JpegPayload)]
    assert not wrong, wrong
    return prepared  # type: ignore[return-value]


def run(decoder: DeviceDecoder, items: list[JpegPayload]) -> tuple[np.ndarray, list]:
    batch, records = decoder(items)
    assert batch.device.type == decoder.device
    assert str(batch.dtype) == "torch.uint8"
    assert tuple(batch.shape) == (sum(isinstance(r, Decoded) for r in records), *SPEC.size, 3)
    return batch.cpu().numpy(), records


def photo(path: Path, size: tuple[int, int], **save: object) -> Path:
    """A smooth picture with detail at every scale, saved as `path` (format from the suffix)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(w * 7 + h)
    noise = rng.normal(0, 12, (h, w, 3))
    rgb = np.stack([127 + 100 * np.sin(x / 17 + y / 29), 127 + 90 * np.cos(y / 11), x % 256], -1)
    Image.fromarray(np.clip(rgb + noise, 0, 255).astype(np.uint8)).save(path, **save)
    return path


def report(label: str, values: list[float]) -> tuple[float, float]:
    median, low = statistics.median(values), min(values)
    print(f"{label}: n={len(values)} PSNR median {median:.1f} dB, min {low:.1f} dB")
    return median, low


# --- fidelity -----------------------------------------------------------------------------------


@needs_photos
def test_imagenet_sample_matches_open_clip(device: str) -> None:
    files = sorted((PHOTOS / "imagenet-500").glob("*.JPEG"))[::12][:40]
    prepared = [prepare(str(p), SPEC, max_pixels=MAX_PIXELS) for p in files]
    items = [p for p in prepared if isinstance(p, JpegPayload)]
    on_cpu = [p for p in prepared if not isinstance(p, JpegPayload)]
    assert len(items) >= 30 and all(isinstance(p, Decoded) for p in on_cpu), on_cpu
    batch, records = run(DeviceDecoder(SPEC, device), items)
    assert all(isinstance(r, Decoded) for r in records)
    values = [psnr(batch[i], reference(item.path)) for i, item in enumerate(items)]
    median, low = report(f"imagenet-500 sample on {device}", values)
    assert median >= MEDIAN_DB and low >= MIN_DB
    for item, record in list(zip(items, records))[:5]:
        assert record.path == item.path and record.pixels.size == 0
        expected = decode(item.path, SPEC, max_pixels=MAX_PIXELS)
        assert isinstance(expected, Decoded)
        facts = ("width", "height", "taken_at", "size", "mtime_ns", "fingerprint", "meta")
        assert [getattr(record, f) for f in facts] == [getattr(expected, f) for f in facts]


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 MP upscales (long side 4000, q90) of real photos: one EXIF-rotated, one progressive."""
    folder = tmp_path_factory.mktemp("large")
    sources = sorted((PHOTOS / "imagenet-500").glob("*.JPEG"))[1:4]
    if len(sources) < 3:
        sources = [photo(folder / f"small{i}.png", (500 - 60 * i, 375)) for i in range(3)]
    rotated = Image.Exif()
    rotated[0x0112] = 6
    options: list[dict[str, object]] = [{}, {"exif": rotated}, {"progressive": True}]
    made = []
    for i, (source, extra) in enumerate(zip(sources, options)):
        with Image.open(source) as image:
            small = image.convert("RGB")
        w, h = small.size
        size = (4000, round(4000 * h / w)) if w >= h else (round(4000 * w / h), 4000)
        made.append(folder / f"large{i}.jpg")
        small.resize(size, Image.Resampling.BICUBIC).save(made[-1], quality=90, **extra)
    return made


def test_12mp_photos_match_open_clip(device: str, large_photos: list[Path]) -> None:
    items = payloads(large_photos)
    batch, records = run(DeviceDecoder(SPEC, device), items)
    values = [psnr(batch[i], reference(p)) for i, p in enumerate(large_photos)]
    median, low = report(f"12 MP upscales on {device}", values)
    assert median >= MEDIAN_DB and low >= MIN_DB
    for path, record in zip(large_photos, records):
        with Image.open(path) as image:
            w, h = image.size
        assert (record.width, record.height) == ((h, w) if "exif" in image.info else (w, h))
        assert max(w, h) == 4000 and w * h >= 10_000_000


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        dataclasses.replace(SPEC, interpolation="bilinear"),
        dataclasses.replace(SPEC, size=(160, 256)),  # open_clip's ResizeKeepRatio branch
    ],
    ids=["bicubic", "bilinear", "non-square"],
)
def test_geometry_follows_open_clip(device: str, tmp_path: Path, spec: PreprocessSpec) -> None:
    sizes = [(640, 480), (480, 640), (100, 80), (224, 224), (1000, 251)]  # incl. upscales
    paths = [photo(tmp_path / f"{w}x{h}.jpg", (w, h), quality=95) for w, h in sizes]
    batch, _ = DeviceDecoder(spec, device)(payloads(paths, spec))
    values = [psnr(batch[i].cpu().numpy(), reference(p, spec)) for i, p in enumerate(paths)]
    assert min(values) >= 40, values  # same decoder family, same filter: far above the bar


# --- orientation ----------------------------------------------------------------------------------


def test_orient_is_pillows_exif_transpose() -> None:
    import torch

    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        expected = Image.fromarray(pixels)
        if orientation in _TRANSPOSE:
            expected = expected.transpose(_TRANSPOSE[orientation])
        got = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation)
        assert np.array_equal(got.permute(1, 2, 0).numpy(), np.asarray(expected)), orientation


@needs_photos
@pytest.mark.parametrize("kind", ["Landscape", "Portrait"])
def test_orientation_samples_decode_upright(device: str, kind: str) -> None:
    paths = [PHOTOS / "formats" / "orientation" / f"{kind}_{n}.jpg" for n in range(1, 9)]
    items = payloads(paths)
    assert [p.orientation for p in items] == list(range(1, 9))
    batch, records = run(DeviceDecoder(SPEC, device), items)
    assert len({(r.width, r.height) for r in records}) == 1
    assert (records[0].width > records[0].height) == (kind == "Landscape")
    for i, path in enumerate(paths):
        # each sample is its own JPEG encoding, so they agree to ~30 dB, not exactly; the CPU
        # path's reference of the same file is the tight check
        assert psnr(batch[i], reference(path)) >= MEDIAN_DB, path.name
        upright, mirrored = psnr(batch[i], batch[0]), psnr(batch[i][:, ::-1], batch[0])
        assert upright >= 25 and upright > mirrored + 5, (path.name, upright, mirrored)


# --- what goes to the CPU, what fails -------------------------------------------------------------


def test_other_files_take_the_cpu_path(tmp_path: Path) -> None:
    rgb = photo(tmp_path / "colour.jpg", (300, 200), quality=90)
    grey = tmp_path / "grey.jpg"
    Image.open(rgb).convert("L").save(grey, quality=90)
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(rgb).convert("CMYK").save(cmyk, quality=90)
    wide = photo(tmp_path / "wide.jpg", (4000, 20), quality=90)  # region-only resize on CPU
    paths = [photo(tmp_path / "a.png", (300, 200)), grey, cmyk, wide]
    if (PHOTOS / "formats" / "heif").is_dir():
        paths += [PHOTOS / "formats" / "heif" / "example.heic"]
    for path in paths:
        got = prepare(str(path), SPEC, max_pixels=MAX_PIXELS)
        assert isinstance(got, Decoded), (path.name, got)
        expected = decode(str(path), SPEC, max_pixels=MAX_PIXELS)
        assert isinstance(expected, Decoded) and np.array_equal(got.pixels, expected.pixels)
    longest = dataclasses.replace(SPEC, resize_mode="longest")
    assert isinstance(prepare(str(rgb), longest, max_pixels=MAX_PIXELS), Decoded)
    with pytest.raises(ValueError, match="longest"):
        DeviceDecoder(longest, "cpu")


def test_bad_files_fail_with_a_reason(tmp_path: Path) -> None:
    good = photo(tmp_path / "good.jpg", (640, 480), quality=90).read_bytes()
    cases = {
        "empty.jpg": (b"", "empty file"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
        "random.jpg": (np.random.default_rng(1).bytes(5000), "not an image"),
        "header-only.jpg": (good[:200], "JPEG"),
    }
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        got = prepare(str(tmp_path / name), SPEC, max_pixels=MAX_PIXELS)
        assert isinstance(got, DecodeFailed) and words in got.reason, (name, got)
    small = prepare(str(tmp_path / "good.jpg"), SPEC, max_pixels=1000)
    assert isinstance(small, DecodeFailed) and "max_pixels" in small.reason


def test_a_corrupt_jpeg_in_a_batch_fails_alone(device: str, tmp_path: Path) -> None:
    paths = [photo(tmp_path / f"{i}.jpg", (320 + 40 * i, 240), quality=90) for i in range(3)]
    first, second, third = payloads(paths)
    junk = b"\xff\xd8\xff" + np.random.default_rng(2).bytes(4000)
    corrupt = dataclasses.replace(second, path="corrupt.jpg", data=junk)
    wrong_size = dataclasses.replace(third, path="wrong-size.jpg", data=first.data)
    decoder = DeviceDecoder(SPEC, device)
    batch, records = run(decoder, [first, corrupt, second, wrong_size, third])
    assert [type(r).__name__ for r in records] == ["Decoded", "DecodeFailed"] * 2 + ["Decoded"]
    assert records[1].reason.startswith("corrupt JPEG data (decode_jpeg: "), records[1]
    assert ".cpp" not in records[1].reason
    assert records[3].reason == "corrupt JPEG data (decoded 3x240x320, header 400x240)"
    alone, _ = run(decoder, [first, second, third])
    assert np.array_equal(batch, alone)  # rows stay aligned with the Decoded records
    split, _ = run(DeviceDecoder(SPEC, device, max_batch_pixels=1), [first, second, third])
    assert np.array_equal(split, alone)  # one decode_jpeg call per photo: same pixels


def test_probe_says_when_a_device_cannot_decode(device: str) -> None:
    DeviceDecoder(SPEC, device).probe()
    with pytest.raises(ImgsearchError, match="device 'cuda:99' does not work here .*CPU"):
        DeviceDecoder(SPEC, "cuda:99").probe()  # no such GPU, wherever this runs


def test_workers_preparing_payloads_never_import_torch(tmp_path: Path) -> None:
    path = photo(tmp_path / "a.jpg", (64, 48), quality=90)
    code = (
        "import sys; from indexer.gpudecode import prepare, JpegPayload; "
        "from imgsearch.modelspec import PreprocessSpec as S; "
        f"r = prepare({str(path)!r}, S((224, 224), (0.5,) * 3, (0.5,) * 3), max_pixels=10**8); "
        "assert isinstance(r, JpegPayload), r; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
