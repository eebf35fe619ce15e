"""Searcher: texts and/or images in, ranked hits out. The one query path (CLI, Python, servers).

A query is a weighted sum of L2-normalised embeddings (texts through the prompt templates,
images through the same decode as indexing), re-normalised and searched by inner product,
which on unit vectors is cosine similarity.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgsearch import config as config_mod
from imgsearch import filtered, languages, templates
from imgsearch.cutoff import CutoffDecision
from imgsearch.errors import ImgsearchError
from imgsearch.filterset import Allowed, FilterCache
from imgsearch.library import TEXT_ENCODER_DIR, ImageInfo, Library
from imgsearch.paths import canonical, display, json_fields
from imgsearch.query import Filter, Query, QueryError, Term, make_cursor, read_cursor
from imgsearch.vectors import IndexParams

if TYPE_CHECKING:
    import numpy.typing as npt

    from imgsearch.config import Settings
    from imgsearch.encoder import Encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One result. `score` is the cosine similarity between the query and the image (None for
    a query of filters only, which lists photos newest first)."""

    path: str
    score: float | None
    id: int
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    info: ImageInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: keys may be added, never renamed. `path` is escaped like the table
        when the name is not valid UTF-8 (or holds control characters); `path_bytes` is then the
        exact name in base64, else null."""
        info = self.info
        return {
            **json_fields(self.path),
            "score": self.score,
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at,
            "id": self.id,
            "taken_at_source": info.taken_at_source if info else None,
            "camera_make": info.camera_make if info else None,
            "camera_model": info.camera_model if info else None,
            "lens": info.lens if info else None,
            "latitude": info.latitude if info else None,
            "longitude": info.longitude if info else None,
            "file_type": info.file_type if info else None,
        }


@dataclass(frozen=True)
class SearchResult:
    """Hits plus what the search did, for the CLI's stderr line, the API and the web UI."""

    hits: list[Hit]
    strategy: str  # exact | ivf | exact-subset | ivf-filtered | ivf-postfiltered | newest-first
    matched: int | None = None  # images the filters allow (None: no filter)
    cutoff: CutoffDecision | None = None
    next_cursor: str | None = None
    left_out: list[tuple[str, int, str]] = field(default_factory=list)  # missing roots

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": [h.to_dict() for h in self.hits],
            "strategy": self.strategy,
            "matched": self.matched,
            "cutoff": asdict(self.cutoff) if self.cutoff else None,
            "next_cursor": self.next_cursor,
            "left_out": [
                {"path": display(p), "images": n, "reason": r} for p, n, r in self.left_out
            ],
        }


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
        if path.exists() and not path.is_dir():
            raise ImgsearchError(f"library path {path} is a file, not a folder")
        self.library = Library.open(path)
        spec = self.library.model_spec()
        if spec is None:
            raise ImgsearchError(f"library {self.library.path} is empty; index some photos first")
        self.spec = spec
        self._encoder: Encoder | None = None
        self._text: Any = None
        self._background: tuple[int, npt.NDArray[np.float32], float | None] | None = None
        self._measure: Any = None  # text -> (tokens, context length) or None
        self._filters = FilterCache()  # allowed ids per filter and committed state

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
                        self._measure = onnx.token_count
                        return onnx.embed
            except ImportError:
                pass
            except Exception as exc:  # a damaged export is not fatal: torch gives the same answer
                log.warning("ignoring text encoder export %s: %s", folder, exc)
        self._measure = self.encoder.token_count
        return self.encoder.embed_texts

    def _cut(self, text: str, prompts: Sequence[str]) -> tuple[str, int, int] | None:
        """(text, tokens, context length) when the text tower (77 tokens for CLIP) cuts it."""
        counts = [c for c in map(self._measure or (lambda _p: None), prompts) if c is not None]
        if counts and (worst := max(counts, key=lambda c: c[0]))[0] > worst[1]:
            return (text if len(text) <= 60 else text[:57] + "...", *worst)
        return None

    @staticmethod
    def _warn_cut(cut: Sequence[tuple[str, int, int]]) -> None:
        """One warning per query, however many of its texts were cut."""
        if cut:
            parts = "; ".join(f"{text!r} is {n} tokens long" for text, n, _ in cut)
            log.warning(
                "%s with its prompt template, and the model reads only the first %d; the rest "
                "is ignored (shorten it)",
                parts,
                cut[0][2],
            )

    def _embed_text(
        self, text: str, mode: str | None
    ) -> tuple[npt.NDArray[np.float32], tuple[str, int, int] | None]:
        if not text.strip():
            raise ImgsearchError("empty query text; give words to search for, e.g. 'a dog'")
        prompts = templates.expand(text, mode or self.settings.templates)
        embedded = self._embed_texts(prompts)
        vec = embedded.mean(axis=0)
        unit = (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)
        return unit, self._cut(text, prompts)

    def embed_text(self, text: str, mode: str | None = None) -> npt.NDArray[np.float32]:
        """One text -> unit vector, averaging the prompt templates of `mode` (CLIP paper)."""
        vec, cut = self._embed_text(text, mode)
        self._warn_cut([cut] if cut else [])
        return vec

    def embed_image(self, path: str | os.PathLike[str]) -> npt.NDArray[np.float32]:
        """An image file -> unit vector: the stored one when the file is indexed and unchanged
        (no model, ~0.1 s), else decoded exactly as when indexing and embedded."""
        stored = self._stored_vector(path)
        if stored is not None:
            return stored[1]
        from imgsearch.decode import DecodeFailed, decode

        absolute = canonical(path)
        if not os.path.lexists(absolute):
            raise ImgsearchError(f"cannot use {display(absolute)} as a query image: no such file")
        result = decode(absolute, self.spec.preprocess, max_pixels=self.settings.max_pixels)
        if isinstance(result, DecodeFailed):
            raise ImgsearchError(
                f"cannot use {display(result.path)} as a query image: {result.reason}"
            )
        return self.encoder.embed_pixels(result.pixels[None])[0]

    def embed_terms(
        self, terms: Sequence[Term], mode: str | None = None
    ) -> npt.NDArray[np.float32]:
        """Weighted sum of the terms' unit vectors, normalised again."""
        if not terms:
            raise ImgsearchError("empty query: give a text, --image FILE or both")
        if any(t.kind == "text" and not t.value.strip() for t in terms):
            raise ImgsearchError("empty query text; give words to search for, e.g. 'a dog'")
        total = np.zeros(self.spec.dim, dtype=np.float32)
        cut = []
        for term in terms:
            if term.kind == "text":
                vec, was_cut = self._embed_text(term.value, mode)
                cut += [was_cut] if was_cut else []
            else:
                vec = self.embed_image(term.value)
            total += term.weight * vec
        self._warn_cut(cut)
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise ImgsearchError("the query's parts cancel out; change the weights or drop a part")
        return total / norm

    # ---- searching -----------------------------------------------------------------------
    def search(self, query: Query, *, exclude: Iterable[int] = ()) -> SearchResult:
        """The one query path: terms -> vector, filters -> allowed ids, rank, cut off, page."""
        if not query.terms:
            if not query.filters:
                raise QueryError("empty query: give a text, an image (@FILE) or a filter")
            return self._browse(query)
        vector = self.embed_terms(list(query.terms), query.templates)
        return self.nearest(vector, query, exclude=exclude)

    def nearest(
        self,
        vector: npt.NDArray[np.float32],
        query: Query | None = None,
        *,
        exclude: Iterable[int] = (),
    ) -> SearchResult:
        """Nearest images to a unit vector under `query`'s filters, cutoff, k and cursor."""
        query = query or Query()
        s = self.settings
        k = query.k or s.limit
        floor = s.min_score if query.min_score is None else query.min_score
        after = read_cursor(query)
        seen = after[2] if after else 0
        excluded = set(exclude)
        with self.library.reading(), self.library.snapshot() as cur:  # one library state
            allowed, left_out = self._allowed(query.filters, cur)
            matched = allowed.count(cur) if allowed is not None and query.filters else None
            if allowed is not None and allowed.count(cur) == 0:
                return SearchResult([], "empty", matched, None, None, left_out)
            index = self.library.ann.searchable(IndexParams.from_settings(s))
            want = seen + k + 1 + len(excluded)
            if query.cutoff == "auto":
                want = max(want, seen + CUTOFF_WINDOW)
            ranked, strategy = filtered.search(index, vector, want, allowed, cur)
            self._filters.trim()  # the allowed set may have listed its ids
            ranked = [(i, v) for i, v in ranked if i not in excluded and v >= floor]
            ranked.sort(key=lambda pair: (-pair[1], pair[0]))  # ties: one order for cursors
            ranked, cut = self._apply_cutoff(ranked, query, vector)
            if after is not None:
                ranked = [(i, v) for i, v in ranked if (-v, i) > (-after[0], after[1])]
            page = ranked[:k]
            info = self.library.info(i for i, _ in page)
        hits = [_hit(info[i], v) for i, v in page if i in info]
        more = len(ranked) > k
        cursor = None
        if more and page:
            cursor = make_cursor(query, page[-1][1], page[-1][0], seen + len(page))
        return SearchResult(hits, strategy, matched, cut, cursor, left_out)

    def _allowed(
        self, filters: Sequence[Filter], cur: Any
    ) -> tuple[Allowed | None, list[tuple[str, int, str]]]:
        """(the ids a search may return, None for all; the missing roots whose images are
        left out), cached per committed state (imgsearch/filterset.py)."""
        from imgsearch import filterset
        from imgsearch.folders import missing_roots

        missing = missing_roots(self.library)
        counts = self.library.counts_by_root() if missing else {}
        left_out = [(m.root.path, counts.get(m.root.id, (0, 0))[0], m.reason) for m in missing]
        if not filters and not missing:
            return None, left_out
        gone = tuple(sorted(m.root.id for m in missing))
        allowed = self._filters.get(
            cur,
            filterset.key_of(filters, gone),
            lambda: filterset.build(self.library, cur, filters, gone),
        )
        return allowed, left_out

    def _apply_cutoff(
        self, ranked: list[tuple[int, float]], query: Query, vector: npt.NDArray[np.float32]
    ) -> tuple[list[tuple[int, float]], CutoffDecision | None]:
        """Apply the cutoff policy to the ranked list (the `-k` cap applies after it). `auto`
        judges the query's best CUTOFF_WINDOW scores against its scores on a random sample of
        the library and the library's null floor (benchmarks/CUTOFF.md)."""
        from imgsearch import cutoff

        if query.cutoff == "none":
            return ranked, None
        top = np.array([v for _, v in ranked[:CUTOFF_WINDOW]], dtype=np.float64)
        background, floor = np.empty(0), None
        if query.cutoff == "auto":
            sample, floor = self._cutoff_background()
            background = sample @ vector
        decision = cutoff.decide(top, background, query.cutoff, null_floor=floor)
        return ranked[: decision.kept], decision

    def _cutoff_background(self) -> tuple[npt.NDArray[np.float32], float | None]:
        """A seeded random sample of the library's vectors and its null floor (the NULL_CAPTIONS'
        best scores on it), cached for the library's generation."""
        from imgsearch import cutoff

        gen = self.library.generation()
        if self._background is not None and self._background[0] == gen:
            return self._background[1], self._background[2]
        with self.library.snapshot() as cur:
            ids = np.array([r[0] for r in cur.execute("SELECT id FROM images WHERE status = 'ok'")])
        rng = np.random.default_rng(0)
        chosen = np.sort(rng.choice(ids, size=min(len(ids), BACKGROUND_SAMPLE), replace=False))
        _, sample = self.library.vectors_for_ids(chosen)
        captions = np.stack([self.embed_text(c, "none") for c in cutoff.NULL_CAPTIONS])
        floor = cutoff.null_floor((sample @ captions.T).max(axis=1)) if len(sample) else None
        self._background = (gen, sample, floor)
        return sample, floor

    def _browse(self, query: Query) -> SearchResult:
        """A query of filters only: the matching photos, newest first."""
        from imgsearch.filters import newest_first

        k = query.k or self.settings.limit
        after = read_cursor(query)
        seen = after[2] if after else 0
        with self.library.reading(), self.library.snapshot() as cur:
            allowed, left_out = self._allowed(query.filters, cur)
            matched = allowed.count(cur) if allowed is not None else None
            order = newest_first(self.library, None if allowed is None else allowed.ids(cur))
            self._filters.trim()
            page = order[seen : seen + k]
            info = self.library.info(page)
        hits = [_hit(info[i], None) for i in page if i in info]
        more = len(order) > seen + k
        cursor = make_cursor(query, 0.0, page[-1], seen + len(page)) if more and page else None
        return SearchResult(hits, "newest-first", matched, None, cursor, left_out)

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
        cutoff: str | float | None = None,
        **filters: Any,
    ) -> list[Hit]:
        """Search by texts and/or images; `negative` texts push results away from them.

        Filters are keyword arguments named like the query language's keys, a value or a list
        of alternatives: `after="2021-06"`, `camera="pixel"`, `ext=["heic", "jpg"]`,
        `near="38.72,-9.14,5km"`, `tag="beach"`; `folder` is `in:`.
        """
        all_terms = list(terms)
        all_terms += [Term("text", t) for t in _as_list(text)]
        all_terms += [Term("image", str(p)) for p in _as_list(image)]
        all_terms += [Term("text", t, -1.0) for t in _as_list(negative)]
        for term in all_terms:
            if term.kind == "text" and not term.value.strip():
                raise QueryError("empty query text; give words to search for")
        if templates_mode is not None and templates_mode not in config_mod.TEMPLATE_MODES:
            raise ImgsearchError(
                f"unknown templates mode {templates_mode!r}; "
                f"use {', '.join(config_mod.TEMPLATE_MODES)}"
            )
        if not all_terms:
            raise QueryError("empty query: give a text, --image FILE or both")
        q = Query(
            terms=tuple(all_terms),
            filters=typed_filters(folder=folder, **filters),
            cutoff=str(cutoff) if cutoff is not None else "none",
            k=k,
            templates=templates_mode,
            min_score=min_score,
        )
        return self.search(q).hits

    def similar(
        self,
        path: str | os.PathLike[str],
        k: int | None = None,
        *,
        min_score: float | None = None,
        folder: str | os.PathLike[str] | None = None,
        **filters: Any,
    ) -> list[Hit]:
        """Images like `path`, the file itself left out; an indexed file needs no model at all."""
        q = Query(k=k, min_score=min_score, filters=typed_filters(folder=folder, **filters))
        return self.similar_to(path, q).hits

    def explain(self, path: str | os.PathLike[str], query: str, method: str | None = None) -> Any:
        """Where in the photo the text `query` matches: a heatmap (imgsearch/clip/explain.py;
        `method` "occlusion" or "gradeclip", default chosen by measurement; the web UI overlays
        it)."""
        from imgsearch.clip.explain import explain_path

        return explain_path(self, os.fspath(path), query, method)

    def facets(self) -> dict[str, list[tuple[str, int]]]:
        """Cameras, years, months, folders and file types with image counts."""
        from imgsearch.filters import facets

        return facets(self.library)

    def similar_to(self, path: str | os.PathLike[str], query: Query) -> SearchResult:
        """`similar` under a whole Query (filters, cutoff, cursor): the CLI and the API."""
        stored = self._stored_vector(path)
        if stored is not None:
            row_id, vector = stored
            return self.nearest(vector, query, exclude=[row_id])
        return self.nearest(self.embed_image(path), query)

    def _stored_vector(
        self, path: str | os.PathLike[str]
    ) -> tuple[int, npt.NDArray[np.float32]] | None:
        """(id, vector) of an indexed file that has not changed since it was indexed."""
        absolute = canonical(path)
        known = self.library.known_files(paths=[absolute]).get(absolute)
        if known is None or known.status != "ok":
            return None
        try:
            st = os.stat(absolute)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns) != (known.size, known.mtime_ns):
            return None
        return self.library.vector_for_path(absolute)


CUTOFF_WINDOW = 200  # hits the auto cutoff looks at
BACKGROUND_SAMPLE = 2000  # library vectors the auto cutoff compares a query's scores with


def typed_filters(**values: Any) -> tuple[Filter, ...]:
    """Python keyword filters (`after="2021"`, `ext=["heic", "jpg"]`, `folder=...`) -> Filters."""
    from imgsearch.query import FILTER_KEYS

    out = []
    for key, value in values.items():
        if value is None:
            continue
        name = "in" if key == "folder" else key
        if name not in FILTER_KEYS:
            raise QueryError(f"unknown filter argument {key!r}")
        items = [value] if isinstance(value, (str, os.PathLike, int, float)) else list(value)
        out.append(
            Filter(
                name, tuple(os.fspath(v) if isinstance(v, os.PathLike) else str(v) for v in items)
            )
        )
    return tuple(out)


def _hit(info: ImageInfo, score: float | None) -> Hit:
    return Hit(info.path, score, info.id, info.width, info.height, info.taken_at, info)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)
