"""Open image + its stat -> PhotoMeta: capture time (and where it came from), camera, lens, GPS,
orientation, size, type and folder, read at index time where the image is already open.

Only Pillow's own EXIF API is used (`getexif`, `get_ifd`, `ExifTags` names), so JPEG, HEIC/AVIF
(pillow-heif), TIFF, PNG (eXIf chunk or ImageMagick's "Raw profile type exif" text) and WebP all
go through one path. EXIF written by real cameras and editors is often broken: every field is
read on its own and a bad one is simply absent; `read_metadata` never raises.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from PIL import ExifTags, Image

from imgsearch.photo import METADATA_VERSION, PhotoMeta

Base, GPS, IFD = ExifTags.Base, ExifTags.GPS, ExifTags.IFD

# Where taken_at came from, best first: the order the capture time is looked for.
SOURCES = ("DateTimeOriginal", "DateTimeDigitized", "DateTime", "GPS", "PNG", "mtime")
# (date tag, its UTC offset tag, its sub-second tag)
_DATE_TAGS = (
    (Base.DateTimeOriginal, Base.OffsetTimeOriginal, Base.SubsecTimeOriginal),
    (Base.DateTimeDigitized, Base.OffsetTimeDigitized, Base.SubsecTimeDigitized),
    (Base.DateTime, Base.OffsetTime, Base.SubsecTime),
)
_EXIF_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_GPS_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_FILE_TYPES = {"MPO": "jpeg"}  # a multi-picture JPEG is a JPEG to the user
MAX_TEXT = 256  # longer make/model/lens strings are garbage, not names


def parse_exif_datetime(value: object) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' (NUL-padded, sometimes dashed) -> ISO 8601, None if garbled."""
    when = _exif_datetime(value)
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%S")


def read_metadata(
    image: Image.Image, path: str, st: os.stat_result, *, size: tuple[int, int] | None = None
) -> PhotoMeta:
    """All metadata of an opened `image` (loaded, for PNG's late eXIf); never raises.

    `size` is the stored size when `image` was drafted smaller; it defaults to image.size.
    """
    with warnings.catch_warnings():  # Pillow warns about every bad tag; absence says enough
        warnings.simplefilter("ignore")
        try:
            exif = image.getexif()
        except Exception:
            exif = Image.Exif()
        orientation = _orientation(exif)
        width, height = size or image.size
        if orientation >= 5:
            width, height = height, width
        main, gps = _ifd(exif, IFD.Exif), _ifd(exif, IFD.GPSInfo)
        taken_at, source = _taken_at(exif, main, gps, image, st)
        latitude = _coordinate(gps, "Latitude", 90.0)
        longitude = _coordinate(gps, "Longitude", 180.0)
        if latitude is None or longitude is None or (latitude == 0.0 and longitude == 0.0):
            latitude = longitude = None  # half a position, or 0,0 written by a GPS without a fix
        return PhotoMeta(
            taken_at=taken_at,
            taken_at_source=source,
            camera_make=_text(exif, Base.Make),
            camera_model=_text(exif, Base.Model),
            lens=_text(main, Base.LensModel),
            latitude=latitude,
            longitude=longitude,
            altitude=_altitude(gps) if latitude is not None else None,
            orientation=orientation,
            width=width,
            height=height,
            file_type=_file_type(image),
            folder=os.path.dirname(path),
        )


def _ifd(exif: Image.Exif, tag: int) -> dict[int, object]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:
        return {}


def _get(tags: Image.Exif | dict[int, object], tag: int) -> object:
    try:
        return tags.get(tag)
    except Exception:
        return None


def _orientation(exif: Image.Exif) -> int:
    value = _get(exif, Base.Orientation)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _text(tags: Image.Exif | dict[int, object], tag: int) -> str | None:
    """An ASCII tag as clean text: NULs and padding stripped, empty or binary junk -> None."""
    value = _get(tags, tag)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.split("\x00", 1)[0].strip()
    if not value or len(value) > MAX_TEXT or not value.isprintable() or "\ufffd" in value:
        return None
    return " ".join(value.split())


def _exif_datetime(value: object) -> datetime | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    match = _EXIF_DATE.match(value.strip("\x00 "))
    if match is None:
        return None
    try:
        return datetime(*(int(part) for part in match.groups()))  # type: ignore[misc]
    except ValueError:  # 0000:00:00 00:00:00 and friends
        return None


def _offset(value: object) -> timezone | None:
    """'+02:00' / '-0500' / 'Z' -> timezone; None when absent or out of range."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ")
    if value == "Z":
        return timezone.utc
    match = _OFFSET.fullmatch(value)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) >= 60:
        return None
    return timezone(-delta if sign == "-" else delta)


def _subsec(value: object) -> int | None:
    """SubSecTime '054' -> microseconds (54000); None when absent or not digits."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    digits = value.strip("\x00 ")
    if not digits.isdigit():
        return None
    return int(digits[:6].ljust(6, "0"))


def _iso(when: datetime) -> str:
    """Seconds always; milliseconds/microseconds when known; the offset when known."""
    spec = "seconds" if when.microsecond == 0 else "milliseconds"
    if when.microsecond % 1000:
        spec = "microseconds"
    return when.isoformat(timespec=spec)


def _taken_at(
    exif: Image.Exif,
    main: dict[int, object],
    gps: dict[int, object],
    image: Image.Image,
    st: os.stat_result,
) -> tuple[str, str]:
    for (date_tag, offset_tag, subsec_tag), source in zip(_DATE_TAGS, SOURCES):
        # the Exif IFD is the right place; some writers put DateTimeOriginal in IFD0 instead
        tags = (main, exif) if date_tag != Base.DateTime else (exif, main)
        when = next((w for w in (_exif_datetime(_get(t, date_tag)) for t in tags) if w), None)
        if when is None:
            continue
        micro = _subsec(_get(main, subsec_tag) or _get(exif, subsec_tag))  # Exif IFD tags
        if micro is not None:
            when = when.replace(microsecond=micro)
        zone = _offset(_get(main, offset_tag) or _get(exif, offset_tag))
        return _iso(when.replace(tzinfo=zone) if zone else when), source
    when = _gps_datetime(gps)
    if when is not None:
        return _iso(when), "GPS"
    when = _png_creation_time(image)
    if when is not None:
        return _iso(when), "PNG"
    mtime = datetime.fromtimestamp(st.st_mtime_ns // 1_000_000_000).astimezone()
    return _iso(mtime), "mtime"


def _number(value: object) -> float | None:
    """An EXIF rational or number as a finite float (0/0 and x/0 -> None)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _triple(value: object) -> tuple[float, float, float] | None:
    if not isinstance(value, tuple) or len(value) != 3:
        return None
    parts = [_number(part) for part in value]
    if any(part is None or part < 0 for part in parts):
        return None
    return (parts[0], parts[1], parts[2])  # type: ignore[return-value]


def _gps_datetime(gps: dict[int, object]) -> datetime | None:
    """GPSDateStamp + GPSTimeStamp: UTC by definition."""
    stamp, clock = _get(gps, GPS.GPSDateStamp), _triple(_get(gps, GPS.GPSTimeStamp))
    if isinstance(stamp, bytes):
        stamp = stamp.decode("latin-1")
    if not isinstance(stamp, str) or clock is None:
        return None
    match = _GPS_DATE.match(stamp.strip("\x00 "))
    hours, minutes, seconds = clock
    if match is None or hours >= 24 or minutes >= 60 or seconds >= 61:
        return None
    try:
        day = datetime(*(int(part) for part in match.groups()), tzinfo=timezone.utc)  # type: ignore[misc]
    except ValueError:
        return None
    return day + timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds))


def _png_creation_time(image: Image.Image) -> datetime | None:
    """PNG's registered 'Creation Time' text keyword (RFC 1123, or ISO 8601 as some write)."""
    if image.format != "PNG":
        return None
    value = image.info.get("Creation Time")
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _coordinate(gps: dict[int, object], axis: str, limit: float) -> float | None:
    """GPSLatitude/GPSLongitude (degrees, minutes, seconds) + its N/S, E/W ref -> signed degrees."""
    dms = _triple(_get(gps, getattr(GPS, f"GPS{axis}")))
    ref = _get(gps, getattr(GPS, f"GPS{axis}Ref"))
    if isinstance(ref, bytes):
        ref = ref.decode("latin-1")
    if dms is None or not isinstance(ref, str):
        return None
    ref = ref.strip("\x00 ").upper()[:1]
    if ref not in ("N", "S", "E", "W") or (ref in ("N", "S")) != (axis == "Latitude"):
        return None
    degrees = dms[0] + dms[1] / 60.0 + dms[2] / 3600.0
    if degrees > limit:
        return None
    return round(-degrees if ref in ("S", "W") else degrees, 7)  # 7 places: ~1 cm


def _altitude(gps: dict[int, object]) -> float | None:
    """GPSAltitude in metres, negative when GPSAltitudeRef says below sea level."""
    metres = _number(_get(gps, GPS.GPSAltitude))
    if metres is None or not 0.0 <= metres < 100_000.0:  # past that it is not a photo on Earth
        return None
    ref = _get(gps, GPS.GPSAltitudeRef)
    if isinstance(ref, bytes):
        ref = ref[0] if ref else 0
    return round(-metres if ref == 1 else metres, 3)


def _file_type(image: Image.Image) -> str | None:
    fmt = image.format
    return _FILE_TYPES.get(fmt, fmt.lower()) if isinstance(fmt, str) else None


__all__ = ["METADATA_VERSION", "SOURCES", "PhotoMeta", "parse_exif_datetime", "read_metadata"]
