"""Prompt templates: CLIP matches captions, so queries are phrased like captions before encoding."""

from __future__ import annotations

from imgsearch.config import TEMPLATE_MODES

PHOTO = ("a photo of {}.",)

# A small ensemble in the spirit of the CLIP paper's ImageNet prompt set, chosen for photo search.
ENSEMBLE = (
    "a photo of {}.",
    "a good photo of {}.",
    "a bad photo of {}.",
    "a close-up photo of {}.",
    "a cropped photo of {}.",
    "a bright photo of {}.",
    "a dark photo of {}.",
    "a blurry photo of {}.",
)


def expand(text: str, mode: str) -> list[str]:
    """The prompts whose embeddings are averaged for `text` under template `mode`."""
    if mode not in TEMPLATE_MODES:
        raise ValueError(f"unknown template mode {mode!r}")
    text = text.strip()
    if mode == "none":
        return [text]
    chosen = PHOTO if mode == "photo" else ENSEMBLE
    return [t.format(text) for t in chosen]
