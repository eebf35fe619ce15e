"""Searcher: texts and/or images in, ranked hits out. The one query path (CLI, Python, servers).

A query is a weighted sum of L2-normalised embeddings (texts through the prompt templates,
images through the same decode as indexing), re-normalised and searched by inner product,
which on unit vectors is cosine similarity.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsearch import config as config_mod
from imgsearch import languages, templates
from imgsearch.errors import ImgsearchError
from imgsearch.library import TEXT_ENCODER_DIR, Library
from imgsearch.vectors import IndexParams

if TYPE_CHECKING:
    import numpy.typing as npt

    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One result. `score` is the cosine similarity between the query and the image."""

    path: str
    score: float
    id: int
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: keys may be added, never renamed."""
        return {
            "path": self.path,
            "score": self.score,
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at,
        }


@dataclass(frozen=True)
class Term:
    """One part of a query: text or image file, with a weight (negative to push away)."""

    kind: str  # "text" | "image"
    value: str
    weight: float = 1.0


_WEIGHT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*\*\s*(.+)$", re.S)


def parse_expression(tokens: Sequence[str]) -> list[Term]:
    """Parse CLI words like  dog + "0.5*beach" - people  or  @me.jpg - blurry  into terms.

    `+` and `-` stand alone between parts; `N*part` weights a part; `@FILE` is an image.
    Words not separated by an operator belong to the same text ("a dog" == a dog).
    """
    terms: list[Term] = []
    sign = 1.0
    words: list[str] = []

    def close() -> None:
        nonlocal words
        if not words:
            return
        text = " ".join(words).strip()
        words = []
        weight = 1.0
        if m := _WEIGHT.match(text):
            weight, text = float(m.group(1)), m.group(2).strip()
        if not text:
            raise ImgsearchError(
                "empty query part; write e.g.  imgsearch query dog + beach - people"
            )
        if text.startswith("@"):
            terms.append(Term("image", text[1:], sign * weight))
        else:
            terms.append(Term("text", text, sign * weight))

    for tok in tokens:
        if tok in ("+", "-"):
            close()
            sign = 1.0 if tok == "+" else -1.0
        else:
            words.append(tok)
    close()
    return terms


class Searcher:
    """Opens a library once and answers queries; models load on first need, once."""

    def __init__(
        self,
        library: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        one_shot: bool = False,
    ) -> None:
        """`one_shot=True` (the CLI) loads models for the fastest first answer; the default
        prepares them for many queries (a few hundred ms more to load, 2-3x faster per query)."""
        self.one_shot = one_shot
        self.settings = settings or config_mod.resolve()
        path = Path(library) if library is not None else self.settings.library_path
        self.library = Library.open(path)
        spec = self.library.model_spec()
        if spec is None:
            raise ImgsearchError(f"library {self.library.path} is empty; index some photos first")
        self.spec = spec
        self._encoder: Encoder | None = None
        self._text: Any = None

    def close(self) -> None:
        self.library.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- encoders ------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The torch model the library was built with (loaded on first image query)."""
        if self._encoder is None:
            from imgsearch.encoder import load_encoder

            self._encoder = load_encoder(self.spec.name, self.spec.pretrained, self.settings.device)
        return self._encoder

    def _embed_texts(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Texts through the exported ONNX text tower when present (no torch), else torch."""
        if self._text is None:
            self._text = self._load_text_encoder()
        return languages.embed(self._text, texts, self.settings.lang)

    def _load_text_encoder(self) -> Any:
        folder = self.library.path / TEXT_ENCODER_DIR
        if self._encoder is None:
            try:
                from imgsearch import textonnx

                if textonnx.exported(folder):
                    onnx = textonnx.OnnxTextEncoder(folder, prepack=not self.one_shot)
                    if onnx.dim == self.spec.dim:
                        return onnx.embed
            except ImportError:
                pass
            except Exception as exc:  # a damaged export is not fatal: torch gives the same answer
                log.warning("ignoring text encoder export %s: %s", folder, exc)
        return self.encoder.embed_texts

    def embed_text(self, text: str, mode: str | None = None) -> npt.NDArray[np.float32]:
        """One text -> unit vector, averaging the prompt templates of `mode` (CLIP paper)."""
        prompts = templates.expand(text, mode or self.settings.templates)
        vec = self._embed_texts(prompts).mean(axis=0)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def embed_image(self, path: str | os.PathLike[str]) -> npt.NDArray[np.float32]:
        """An image file (indexed or not) -> unit vector, decoded exactly as when indexing."""
        from indexer.decode import DecodeFailed, decode

        result = decode(
            os.path.abspath(path), self.spec.preprocess, max_pixels=self.settings.max_pixels
        )
        if isinstance(result, DecodeFailed):
            raise ImgsearchError(f"cannot use {result.path} as a query image: {result.reason}")
        return self.encoder.embed_pixels(result.pixels[None])[0]

    def embed_terms(
        self, terms: Sequence[Term], mode: str | None = None
    ) -> npt.NDArray[np.float32]:
        """Weighted sum of the terms' unit vectors, normalised again."""
        if not terms:
            raise ImgsearchError("empty query: give a text, --image FILE or both")
        total = np.zeros(self.spec.dim, dtype=np.float32)
        for term in terms:
            vec = (
                self.embed_text(term.value, mode)
                if term.kind == "text"
                else self.embed_image(term.value)
            )
            total += term.weight * vec
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise ImgsearchError("the query's parts cancel out; change the weights or drop a part")
        return total / norm

    # ---- searching -----------------------------------------------------------------------
    def search(
        self,
        vector: npt.NDArray[np.float32],
        *,
        k: int | None = None,
        min_score: float | None = None,
        folder: str | os.PathLike[str] | None = None,
        exclude: Iterable[int] = (),
    ) -> list[Hit]:
        """Nearest images to a unit vector, best first: the step every query ends in."""
        s = self.settings
        k = k or s.limit
        floor = s.min_score if min_score is None else min_score
        excluded = set(exclude)
        with self.library.reading():  # index, re-rank vectors and metadata: one library state
            allowed = None
            if folder is not None:
                allowed = self.library.ids_under(os.path.abspath(os.path.expanduser(folder)))
                if len(allowed) == 0:
                    return []
            index = self.library.vector_index(IndexParams.from_settings(s))
            scores, ids = index.search(vector[None, :], k + len(excluded), allowed)
            pairs = [
                (int(i), float(sc))
                for i, sc in zip(ids[0], scores[0])
                if i >= 0 and i not in excluded
            ]
            info = self.library.info(i for i, _ in pairs)
        hits = [
            Hit(info[i].path, sc, i, info[i].width, info[i].height, info[i].taken_at)
            for i, sc in pairs
            if i in info and sc >= floor
        ]
        return hits[:k]

    def query(
        self,
        text: str | Sequence[str] | None = None,
        image: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        k: int | None = None,
        *,
        negative: str | Sequence[str] | None = None,
        terms: Sequence[Term] = (),
        min_score: float | None = None,
        folder: str | os.PathLike[str] | None = None,
        templates_mode: str | None = None,
    ) -> list[Hit]:
        """Search by texts and/or images; `negative` texts push results away from them."""
        all_terms = list(terms)
        all_terms += [Term("text", t) for t in _as_list(text)]
        all_terms += [Term("image", str(p)) for p in _as_list(image)]
        all_terms += [Term("text", t, -1.0) for t in _as_list(negative)]
        if templates_mode is not None and templates_mode not in config_mod.TEMPLATE_MODES:
            raise ImgsearchError(
                f"unknown templates mode {templates_mode!r}; "
                f"use {', '.join(config_mod.TEMPLATE_MODES)}"
            )
        vector = self.embed_terms(all_terms, templates_mode)
        return self.search(vector, k=k, min_score=min_score, folder=folder)

    def similar(
        self,
        path: str | os.PathLike[str],
        k: int | None = None,
        *,
        min_score: float | None = None,
        folder: str | os.PathLike[str] | None = None,
    ) -> list[Hit]:
        """Images like `path`, the file itself left out; an indexed file needs no model at all."""
        absolute = os.path.abspath(os.path.expanduser(path))
        stored = self.library.vector_for_path(absolute)
        if stored is not None:
            row_id, vector = stored
            return self.search(vector, k=k, min_score=min_score, folder=folder, exclude=[row_id])
        if not os.path.lexists(absolute):
            raise ImgsearchError(f"{absolute}: no such file")
        return self.search(self.embed_image(absolute), k=k, min_score=min_score, folder=folder)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)
