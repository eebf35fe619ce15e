"""imgsearch.exif: metadata read at index time, from files with known EXIF and from real photos."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from imgsearch.decode import Decoded, _setup, decode
from imgsearch.exif import PhotoMeta, parse_exif_datetime, read_metadata
from tests.support.photos import MAX_PIXELS, SPEC

Base, GPS, IFD = ExifTags.Base, ExifTags.GPS, ExifTags.IFD
MTIME = 1_600_000_000  # 2020-09-13T12:26:40Z, set on every generated file


def full_exif() -> Image.Exif:
    """Every field read_metadata looks at, with southern/western and below-sea-level signs."""
    exif = Image.Exif()
    exif[Base.Make] = "TestCam\x00"
    exif[Base.Model] = "  Model   X1 "
    exif[Base.Orientation] = 6
    exif[Base.DateTime] = "2020:01:02 03:04:05"
    main = exif.get_ifd(IFD.Exif)
    main[Base.DateTimeOriginal] = "2019:07:08 09:10:11"
    main[Base.OffsetTimeOriginal] = "+05:30"
    main[Base.SubsecTimeOriginal] = "25"
    main[Base.DateTimeDigitized] = "2019:07:08 09:10:12"
    main[Base.LensModel] = "50mm f/1.8"
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "S"
    gps[GPS.GPSLatitude] = (33.0, 51.0, 54.0)
    gps[GPS.GPSLongitudeRef] = "W"
    gps[GPS.GPSLongitude] = (70.0, 30.0, 0.0)
    gps[GPS.GPSAltitudeRef] = b"\x01"
    gps[GPS.GPSAltitude] = 12.5
    gps[GPS.GPSDateStamp] = "2019:07:08"
    gps[GPS.GPSTimeStamp] = (3.0, 40.0, 11.0)
    return exif


def save(path: Path, fmt: str, exif: Image.Exif | bytes | None = None, **params: object) -> Path:
    """A 40x20 picture in `fmt` at `path` carrying `exif`, with mtime MTIME."""
    _setup()  # HEIF/AVIF writers
    if exif is not None:
        params["exif"] = exif.tobytes() if isinstance(exif, Image.Exif) else exif
    Image.new("RGB", (40, 20), (200, 30, 30)).save(path, fmt, **params)
    os.utime(path, (MTIME, MTIME))
    return path


def meta_of(path: Path) -> PhotoMeta:
    """Like the indexer: open, load, then read."""
    _setup()
    with Image.open(path) as image:
        image.load()
        return read_metadata(image, str(path), os.stat(path))


def mtime_iso() -> str:
    return datetime.fromtimestamp(MTIME).astimezone().isoformat(timespec="seconds")


# --- known EXIF written with Pillow, in every format ----------------------------------------------


FORMATS = [("jpg", "JPEG", "jpeg"), ("png", "PNG", "png"), ("webp", "WEBP", "webp"),
           ("tif", "TIFF", "tiff"), ("heic", "HEIF", "heif"), ("avif", "AVIF", "avif")]  # fmt: skip


@pytest.mark.parametrize(("ext", "fmt", "file_type"), FORMATS)
def test_every_field_is_read_in_every_format(
    tmp_path: Path, ext: str, fmt: str, file_type: str
) -> None:
    path = save(tmp_path / f"full.{ext}", fmt, full_exif())
    meta = meta_of(path)
    assert meta.taken_at == "2019-07-08T09:10:11.250+05:30"
    assert meta.taken_at_source == "DateTimeOriginal"
    assert (meta.camera_make, meta.camera_model, meta.lens) == ("TestCam", "Model X1", "50mm f/1.8")
    assert meta.latitude == pytest.approx(-(33 + 51 / 60 + 54 / 3600), abs=1e-6)
    assert meta.longitude == pytest.approx(-70.5, abs=1e-6)
    assert meta.altitude == -12.5 and meta.has_gps
    assert meta.file_type == file_type and meta.folder == str(tmp_path)
    if fmt in ("TIFF", "HEIF", "AVIF"):  # the container stores orientation itself (or drops it)
        assert (meta.width, meta.height) in ((40, 20), (20, 40))
    else:
        assert (meta.orientation, meta.width, meta.height) == (6, 20, 40)  # size as displayed


def _without(exif: Image.Exif, *tags: int) -> Image.Exif:
    main = exif.get_ifd(IFD.Exif)
    for tag in tags:
        main.pop(tag, None)
        exif.pop(tag, None)
    return exif


def test_capture_time_falls_back_in_order(tmp_path: Path) -> None:
    """DateTimeOriginal, then DateTimeDigitized, DateTime, GPS (UTC) and the file's mtime."""
    steps = [
        ((Base.DateTimeOriginal,), "2019-07-08T09:10:12", "DateTimeDigitized"),
        ((Base.DateTimeDigitized,), "2020-01-02T03:04:05", "DateTime"),
        ((Base.DateTime,), "2019-07-08T03:40:11+00:00", "GPS"),
    ]
    exif, removed = full_exif(), []
    for n, (tags, expected, source) in enumerate(steps):
        removed += tags
        path = save(tmp_path / f"step{n}.jpg", "JPEG", _without(full_exif(), *removed))
        meta = meta_of(path)
        assert (meta.taken_at, meta.taken_at_source) == (expected, source)
    exif = _without(full_exif(), *removed)
    del exif.get_ifd(IFD.GPSInfo)[GPS.GPSDateStamp]
    meta = meta_of(save(tmp_path / "nodate.jpg", "JPEG", exif))
    assert (meta.taken_at, meta.taken_at_source) == (mtime_iso(), "mtime")
    assert meta.has_gps  # the position stays when its time is incomplete


def test_sub_seconds_and_offset_belong_to_their_own_date(tmp_path: Path) -> None:
    exif = _without(full_exif(), Base.DateTimeOriginal, Base.DateTimeDigitized)
    main = exif.get_ifd(IFD.Exif)
    main[Base.OffsetTime], main[Base.SubsecTime] = "-0300", "7"  # DateTime's own
    meta = meta_of(save(tmp_path / "a.jpg", "JPEG", exif))
    assert (meta.taken_at, meta.taken_at_source) == ("2020-01-02T03:04:05.700-03:00", "DateTime")


def test_png_raw_profile_text_and_creation_time(tmp_path: Path) -> None:
    """ImageMagick writes EXIF as hex text in PNGs; PNG's own 'Creation Time' keyword is a date."""
    from PIL import PngImagePlugin

    raw = full_exif().tobytes()
    hexed = raw.hex()
    info = PngImagePlugin.PngInfo()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{lines}\n", zip=True)
    meta = meta_of(save(tmp_path / "magick.png", "PNG", pnginfo=info))
    assert (meta.camera_make, meta.taken_at_source) == ("TestCam", "DateTimeOriginal")

    info = PngImagePlugin.PngInfo()
    info.add_text("Creation Time", "Sat, 04 Mar 2023 10:20:30 +0100")
    meta = meta_of(save(tmp_path / "created.png", "PNG", pnginfo=info))
    assert (meta.taken_at, meta.taken_at_source) == ("2023-03-04T10:20:30+01:00", "PNG")


def test_no_exif_at_all(tmp_path: Path) -> None:
    meta = meta_of(save(tmp_path / "plain.png", "PNG"))
    assert meta == PhotoMeta(
        taken_at=mtime_iso(), taken_at_source="mtime", camera_make=None, camera_model=None,
        lens=None, latitude=None, longitude=None, altitude=None, orientation=1,
        width=40, height=20, file_type="png", folder=str(tmp_path),
    )  # fmt: skip


# --- broken EXIF: absent fields, never an exception -----------------------------------------------


def _broken() -> Image.Exif:
    exif = Image.Exif()
    exif[Base.Make] = "\x01\x02\x03binary"
    exif[Base.Model] = ""
    exif[Base.Orientation] = 9
    exif[Base.DateTime] = "0000:00:00 00:00:00"
    main = exif.get_ifd(IFD.Exif)
    main[Base.DateTimeOriginal] = "2019:13:45 25:00:00"
    main[Base.DateTimeDigitized] = "    :  :     :  :  "
    main[Base.OffsetTimeOriginal] = "+99:00"
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "E"  # a longitude's ref on a latitude
    gps[GPS.GPSLatitude] = (33.0, 51.0, 54.0)
    gps[GPS.GPSLongitudeRef] = "W"
    gps[GPS.GPSLongitude] = (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0)  # x/0
    gps[GPS.GPSAltitude] = TiffImagePlugin.IFDRational(0, 0)
    gps[GPS.GPSDateStamp] = "2019:02:30"
    gps[GPS.GPSTimeStamp] = (25.0, 0.0, 0.0)
    return exif


def test_garbled_tags_are_unknown(tmp_path: Path) -> None:
    meta = meta_of(save(tmp_path / "broken.jpg", "JPEG", _broken()))
    assert (meta.camera_make, meta.camera_model, meta.orientation) == (None, None, 1)
    assert (meta.latitude, meta.longitude, meta.altitude) == (None, None, None)
    assert (meta.taken_at, meta.taken_at_source) == (mtime_iso(), "mtime")


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        ((("N", (0.0, 0.0, 0.0)), ("E", (0.0, 0.0, 0.0)))),  # 0,0: a receiver without a fix
        ((("N", (95.0, 0.0, 0.0)), ("E", (10.0, 0.0, 0.0)))),  # past the pole
        ((("N", (45.0, 0.0)), ("E", (10.0, 0.0, 0.0)))),  # two parts instead of three
        ((("N", (45.0, 0.0, 0.0)), (None, (10.0, 0.0, 0.0)))),  # no E/W
    ],
)
def test_implausible_positions_are_unknown(tmp_path: Path, lat: tuple, lon: tuple) -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(IFD.GPSInfo)
    for (ref, value), axis in ((lat, "Latitude"), (lon, "Longitude")):
        gps[getattr(GPS, f"GPS{axis}")] = value
        if ref is not None:
            gps[getattr(GPS, f"GPS{axis}Ref")] = ref
    gps[GPS.GPSAltitude] = 100.0
    meta = meta_of(save(tmp_path / "pos.jpg", "JPEG", exif))
    assert (meta.latitude, meta.longitude, meta.altitude) == (None, None, None)


def test_unreadable_exif_block(tmp_path: Path) -> None:
    junk = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0" + bytes(50)  # IFD offset past the end
    path = save(tmp_path / "junk.jpg", "JPEG", junk)
    meta = meta_of(path)
    assert (meta.taken_at_source, meta.orientation, meta.width) == ("mtime", 1, 40)


def test_getexif_raising_is_survived(tmp_path: Path) -> None:
    path = save(tmp_path / "a.jpg", "JPEG", full_exif())
    with Image.open(path) as image:

        def explode() -> Image.Exif:
            raise SyntaxError("not a TIFF file")

        image.getexif = explode  # type: ignore[method-assign]
        meta = read_metadata(image, str(path), os.stat(path))
    assert (meta.taken_at_source, meta.camera_make, meta.width) == ("mtime", None, 40)


def test_parse_exif_datetime() -> None:
    assert parse_exif_datetime("2008:05:30 15:56:01\x00") == "2008-05-30T15:56:01"
    assert parse_exif_datetime(b"2008-05-30 15:56:01") == "2008-05-30T15:56:01"
    assert parse_exif_datetime("0000:00:00 00:00:00") is None
    assert parse_exif_datetime(20080530) is None


# --- through decode: the pipeline gets it --------------------------------------------------------


def test_decode_carries_meta_with_the_full_size_of_a_drafted_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1000), (10, 120, 200)).save(path, exif=full_exif().tobytes())
    result = decode(str(path), SPEC, max_pixels=MAX_PIXELS)  # drafted to 1/2 scale
    assert isinstance(result, Decoded)
    assert (result.meta.width, result.meta.height) == (1000, 1600) == (result.width, result.height)
    assert result.taken_at == result.meta.taken_at == "2019-07-08T09:10:11.250+05:30"
    assert result.meta.camera_make == "TestCam"


# --- the shared photos ---------------------------------------------------------------------------


def _images(root: Path) -> list[Path]:
    skip = {"README", "LICENSE", "COPYING", ".rst"}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in skip and
                  p.name not in skip)  # fmt: skip


def test_every_shared_photo_reads_without_error(photos: Path) -> None:
    """Broken files included (camera/jpg/invalid, camera/jpg/tests): metadata or absence."""
    paths = _images(photos / "formats")
    assert len(paths) > 100
    decoded = 0
    for path in paths:
        result = decode(str(path), SPEC, max_pixels=MAX_PIXELS)
        if isinstance(result, Decoded):
            decoded += 1
            assert isinstance(result.meta, PhotoMeta), path
            assert (result.meta.width, result.meta.height) == (result.width, result.height), path
            assert result.meta.taken_at_source is not None, path
        try:
            image = Image.open(path)
        except Exception:
            continue  # not openable at all: decode said so above
        with image:
            assert isinstance(read_metadata(image, str(path), os.stat(path)), PhotoMeta), path
    assert decoded >= 100


# Values checked against exiftool 12.57 (`exiftool -n -DateTimeOriginal -OffsetTimeOriginal
# -SubSecTimeOriginal -Make -Model -LensModel -GPSLatitude -GPSLongitude -GPSAltitude`).
KNOWN = {
    "camera/heic/IMG_5195.HEIC": dict(
        taken_at="2021-04-11T15:47:53.054-05:00", taken_at_source="DateTimeOriginal",
        camera_make="Apple", camera_model="iPhone 11 Pro Max",
        lens="iPhone 11 Pro Max back triple camera 4.25mm f/1.8",
        latitude=39.0513444, longitude=-94.2887722, altitude=260.561, file_type="heif",
    ),
    "camera/heic/mobile/HMD_Nokia_8.3_5G.heif": dict(  # IFD0 ModifyDate + ExifIFD SubSecTime
        taken_at="2022-02-03T14:44:07.722", taken_at_source="DateTime",
        latitude=40.7886852, longitude=-4.0051409, altitude=1942.422,
    ),
    "camera/jpg/Kodak_CX7530.jpg": dict(  # southern hemisphere, just
        taken_at="2005-08-13T09:47:23", camera_make="EASTMAN KODAK COMPANY",
        latitude=-0.3713, longitude=36.0564167, altitude=None,
    ),
    "camera/jpg/mobile/HMD_Nokia_8.3_5G.jpg": dict(
        taken_at="2022-08-14T14:12:31+03:00", camera_make="HMD Global", camera_model="Nokia 8.3 5G",
        latitude=60.1467056, longitude=24.9067722,
    ),
    "camera/jpg/tests/87_OSError.jpg": dict(
        camera_model="NIKON D70s", lens="18.0-70.0 mm f/3.5-4.5",
        latitude=43.7855944, longitude=11.2346194, altitude=42.123,
    ),
    "camera/jpg/tests/32-lens_data.jpeg": dict(taken_at="2012-07-14T16:30:12.680"),
    "camera/jpg/hdr/canon_hdr_NO.jpg": dict(orientation=6, width=1536, height=2048),
    "camera/jpg/exif-org/sony-d700.jpg": dict(camera_make="SONY", camera_model="DSC-D700"),  # NULs
    "camera/tiff/DudleyLeavittUtah.tiff": dict(
        taken_at="2009-09-26T01:11:52", taken_at_source="DateTime", file_type="tiff"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_values_of_camera_files(photos: Path, name: str) -> None:
    meta = meta_of(photos / "formats" / name)
    got = {key: getattr(meta, key) for key in KNOWN[name]}
    expected = {
        key: pytest.approx(value, abs=1e-6) if isinstance(value, float) else value
        for key, value in KNOWN[name].items()
    }
    assert got == expected


def test_read_file_metadata_needs_no_decode(tmp_path: Path) -> None:
    """The re-read path for libraries indexed before metadata: same answer as decode()."""
    from imgsearch.decode import DecodeFailed, read_file_metadata

    path = save(tmp_path / "late.png", "PNG", full_exif())
    decoded = decode(str(path), SPEC, max_pixels=MAX_PIXELS)
    assert isinstance(decoded, Decoded)
    assert read_file_metadata(str(path), max_pixels=MAX_PIXELS) == decoded.meta
    (tmp_path / "empty.jpg").write_bytes(b"")
    failed = read_file_metadata(str(tmp_path / "empty.jpg"), max_pixels=MAX_PIXELS)
    assert failed == DecodeFailed(str(tmp_path / "empty.jpg"), "empty file")
