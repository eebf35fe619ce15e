"""The shared real photos (../shared/photos beside the repo) and the CLIP preprocessing the
decode tests compare against."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsearch.modelspec import PreprocessSpec

# resolved: the library stores real paths, and ../shared may be a symbolic link
SHARED_PHOTOS = (Path(__file__).resolve().parents[3] / "shared" / "photos").resolve()
needs_photos = pytest.mark.skipif(
    not SHARED_PHOTOS.is_dir(),
    reason=f"shared test photos not found at {SHARED_PHOTOS} (../shared/photos)",
)
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation
STD = (0.26862954, 0.26130258, 0.27577711)
SPEC = PreprocessSpec(size=(224, 224), mean=MEAN, std=STD)
MAX_PIXELS = 200_000_000
