"""What `index` calls after storing new photos: tags and album membership for them only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgsearch.library import Library


def update_new(library: Library, ids: Iterable[int]) -> tuple[int, int]:
    """Tag the just-indexed photos `ids` for every applied label set and score them for every
    album; returns (tags added, album memberships added). Cheap when nothing is applied."""
    from imgsearch.clip.albumstore import albums_score_new
    from imgsearch.clip.tags import tag_new

    wanted = [int(i) for i in ids]
    return tag_new(library, wanted), albums_score_new(library, wanted)
