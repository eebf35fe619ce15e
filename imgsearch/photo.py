"""A photo's metadata as the library stores it (read by imgsearch/exif.py at index time)."""

from __future__ import annotations

from dataclasses import dataclass

# Bump when imgsearch/exif.py learns a field or a fix: the library re-reads rows stored with less.
METADATA_VERSION = 2  # 2: the perceptual hash (0008)


@dataclass(frozen=True)
class PhotoMeta:
    """What the library stores about a photo besides its vector; None means unknown."""

    taken_at: str | None  # ISO 8601 local time, '.fff' when sub-seconds known, '+HH:MM' offset
    taken_at_source: str | None  # one of SOURCES
    camera_make: str | None
    camera_model: str | None
    lens: str | None
    latitude: float | None  # signed decimal degrees, north positive
    longitude: float | None  # signed decimal degrees, east positive
    altitude: float | None  # metres above sea level (negative below)
    orientation: int  # EXIF orientation 1..8 (1 when absent or garbled)
    width: int  # pixel size as displayed, after orientation
    height: int
    file_type: str | None  # from content, lower case: jpeg, heif, avif, png, tiff, webp, ...
    folder: str  # the directory holding the file, as given

    @property
    def has_gps(self) -> bool:
        return self.latitude is not None and self.longitude is not None
