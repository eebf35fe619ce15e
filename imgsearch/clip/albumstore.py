"""Albums in the library: definitions and example vectors in SQLite, membership derived.

Every change (create, add, remove) refits the scorer and rescores the whole library (one
matrix product); `albums_score_new` scores just-indexed photos, one dot product each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgsearch.clip import store
from imgsearch.clip.albums import RANDOM_NEGATIVES, Scorer, fit
from imgsearch.errors import ImgsearchError
from imgsearch.paths import from_key, to_key

if TYPE_CHECKING:
    from imgsearch.library import Library

EmbedImage = Callable[[str], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class Album:
    name: str
    text: str | None
    method: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    members: int


def _missing(library: Library, name: str) -> ImgsearchError:
    have = ", ".join(r[0] for r in store.rows(library, "SELECT name FROM albums ORDER BY name"))
    return ImgsearchError(
        f"no album {name!r} in library {library.path} (albums: {have or 'none'}); "
        f"make one with: imgsearch album create {name} --like PHOTO"
    )


def _examples(library: Library, name: str) -> list[tuple[str, bool, npt.NDArray[np.float32]]]:
    found = store.rows(
        library,
        "SELECT path, positive, vector FROM album_examples WHERE album = ? ORDER BY path",
        (name,),
    )
    return [(from_key(p), bool(pos), np.frombuffer(v, np.float32).copy()) for p, pos, v in found]


def _background(library: Library, exclude: set[str], dim: int) -> npt.NDArray[np.float32]:
    """Up to RANDOM_NEGATIVES library photos, evenly spaced by id (deterministic)."""
    found = store.rows(library, "SELECT id, path FROM images WHERE status = 'ok' ORDER BY id")
    ids = np.asarray([i for i, p in found if from_key(p) not in exclude], dtype=np.int64)
    if len(ids) > RANDOM_NEGATIVES:
        ids = ids[np.linspace(0, len(ids) - 1, RANDOM_NEGATIVES).astype(np.int64)]
    parts = [v for _, v in library.vectors(only=ids)] if len(ids) else []
    return np.concatenate(parts) if parts else np.empty((0, dim), np.float32)


def _text_vector(library: Library, text: str | None) -> npt.NDArray[np.float32] | None:
    if not text:
        return None
    from imgsearch.clip.zeroshot import text_model

    return text_model(library).embed([f"a photo of {text}."])[0]


def vector_of(library: Library, path: str, embed_image: EmbedImage | None) -> np.ndarray:
    """A photo's stored vector, else (not indexed) `embed_image(path)`."""
    stored = library.vector_for_path(path)
    if stored is not None:
        return stored[1]
    if embed_image is None:
        raise ImgsearchError(f"{path} is not in library {library.path}; index it first")
    return embed_image(path)


def _refit(library: Library, name: str, text: str | None, created: str | None) -> Scorer:
    """Fit the album's scorer from what is stored and rescore the library; returns it."""
    from imgsearch.library import now

    examples = _examples(library, name)
    dim = int(library.meta().get("dim", "0") or 0)
    pos = np.array([v for _, p, v in examples if p], np.float32).reshape(-1, dim)
    neg = np.array([v for _, p, v in examples if not p], np.float32).reshape(-1, dim)
    if not len(pos) and not text:
        raise ImgsearchError(f"album {name!r} needs a --text or at least one --like photo")
    background = _background(library, {p for p, _, _ in examples}, dim)
    scorer = fit(pos, neg, _text_vector(library, text), background)
    stamp = now()
    with store.writing(library) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO albums (name, text, method, weights, bias, threshold, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                name,
                text,
                scorer.method,
                scorer.weights.astype(np.float32).tobytes(),
                scorer.bias,
                scorer.threshold,
                created or stamp,
                stamp,
            ),
        )
        conn.execute("DELETE FROM album_members WHERE album = ?", (name,))
        for ids, vectors in library.vectors():
            _insert_members(conn, name, ids, scorer, vectors)
    return scorer


def _insert_members(conn, name: str, ids, scorer: Scorer, vectors) -> int:  # type: ignore[no-untyped-def]
    s = scorer.scores(vectors)
    keep = s >= scorer.threshold
    conn.executemany(
        "INSERT OR REPLACE INTO album_members (album, image_id, score) VALUES (?,?,?)",
        zip([name] * int(keep.sum()), ids[keep].tolist(), s[keep].astype(float).tolist()),
    )
    return int(keep.sum())


def _store_examples(
    library: Library, name: str, paths: Sequence[str], positive: bool, embed: EmbedImage | None
) -> None:
    rows = [(name, to_key(p), int(positive), vector_of(library, p, embed).tobytes()) for p in paths]
    with store.writing(library) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO album_examples (album, path, positive, vector) "
            "VALUES (?,?,?,?)",
            rows,
        )


def create(
    library: Library,
    name: str,
    like: Sequence[str] = (),
    unlike: Sequence[str] = (),
    text: str | None = None,
    embed_image: EmbedImage | None = None,
) -> Album:
    if store.rows(library, "SELECT 1 FROM albums WHERE name = ?", (name,)):
        raise ImgsearchError(
            f"album {name!r} exists already; add photos with imgsearch album add {name} FILE, "
            f"or delete it first"
        )
    if not like and not text:
        raise ImgsearchError(f"album {name!r} needs a --text or at least one --like photo")
    _store_examples(library, name, like, True, embed_image)
    _store_examples(library, name, unlike, False, embed_image)
    try:
        _refit(library, name, text, None)
    except Exception:
        with store.writing(library) as conn:
            conn.execute("DELETE FROM album_examples WHERE album = ?", (name,))
        raise
    return info(library, name)


def _definition(library: Library, name: str) -> tuple[str | None, str]:
    found = store.rows(library, "SELECT text, created_at FROM albums WHERE name = ?", (name,))
    if not found:
        raise _missing(library, name)
    return found[0]


def add(
    library: Library,
    name: str,
    files: Sequence[str],
    positive: bool = True,
    embed_image: EmbedImage | None = None,
) -> Album:
    text, created = _definition(library, name)
    _store_examples(library, name, files, positive, embed_image)
    _refit(library, name, text, created)
    return info(library, name)


def remove(library: Library, name: str, files: Sequence[str]) -> Album:
    text, created = _definition(library, name)
    stored = {p for p, _, _ in _examples(library, name)}
    unknown = [f for f in files if f not in stored]
    if unknown:
        raise ImgsearchError(f"{unknown[0]} is not an example of album {name!r}")
    with store.writing(library) as conn:
        conn.executemany(
            "DELETE FROM album_examples WHERE album = ? AND path = ?",
            [(name, to_key(f)) for f in files],
        )
    _refit(library, name, text, created)
    return info(library, name)


def delete(library: Library, name: str) -> None:
    _definition(library, name)
    with store.writing(library) as conn:
        for table in ("album_members", "album_examples"):
            conn.execute(f"DELETE FROM {table} WHERE album = ?", (name,))
        conn.execute("DELETE FROM albums WHERE name = ?", (name,))


def info(library: Library, name: str) -> Album:
    found = store.rows(library, "SELECT text, method FROM albums WHERE name = ?", (name,))
    if not found:
        raise _missing(library, name)
    examples = _examples(library, name)
    return Album(
        name,
        found[0][0],
        found[0][1],
        tuple(p for p, pos, _ in examples if pos),
        tuple(p for p, pos, _ in examples if not pos),
        len(album_member_ids(library, name)),
    )


def list_albums(library: Library) -> list[Album]:
    return [info(library, r[0]) for r in store.rows(library, "SELECT name FROM albums ORDER BY 1")]


def members(library: Library, name: str) -> list[tuple[int, str, float]]:
    """(id, path, score) of the album's photos, best first."""
    _definition(library, name)
    found = store.rows(
        library,
        "SELECT m.image_id, i.path, m.score FROM album_members m JOIN images i ON "
        "i.id = m.image_id AND i.status = 'ok' WHERE m.album = ? ORDER BY m.score DESC, i.path",
        (name,),
    )
    return [(i, from_key(p), score) for i, p, score in found]


def album_member_ids(library: Library, name: str) -> npt.NDArray[np.int64]:
    """Ids of the album's photos: the `album:` filter."""
    found = store.rows(
        library,
        "SELECT m.image_id FROM album_members m JOIN images i ON i.id = m.image_id "
        "AND i.status = 'ok' WHERE m.album = ? ORDER BY m.image_id",
        (name,),
    )
    return np.asarray([r[0] for r in found], dtype=np.int64)


def albums_score_new(library: Library, ids: Iterable[int]) -> int:
    """Add just-indexed photos to the albums they belong to (for `index`); returns how many."""
    wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
    defs = store.rows(library, "SELECT name, method, weights, bias, threshold FROM albums")
    if not len(wanted) or not defs:
        return 0
    added = 0
    with store.writing(library) as conn:
        for ids_chunk, vectors in library.vectors(only=wanted):
            for name, method, weights, bias, threshold in defs:
                scorer = Scorer(method, np.frombuffer(weights, np.float32), bias, threshold)
                marks = ",".join("?" * len(ids_chunk))
                conn.execute(
                    f"DELETE FROM album_members WHERE album = ? AND image_id IN ({marks})",
                    [name, *ids_chunk.tolist()],
                )
                added += _insert_members(conn, name, ids_chunk, scorer, vectors)
    return added


def albums_of(library: Library, image_id: int) -> list[dict]:
    """The albums a photo is in (its score) or an example of (like / unlike): the photo page."""
    sql = "SELECT album, score FROM album_members WHERE image_id = ?"
    member = dict(store.rows(library, sql, (image_id,)))
    example = dict(
        store.rows(
            library,
            "SELECT e.album, e.positive FROM album_examples e JOIN images i ON i.path = e.path "
            "WHERE i.id = ?",
            (image_id,),
        )
    )
    return [
        {
            "album": name,
            "member": name in member,
            "score": member.get(name),
            "example": None if name not in example else ("like" if example[name] else "unlike"),
        }
        for name in sorted(set(member) | set(example))
    ]
