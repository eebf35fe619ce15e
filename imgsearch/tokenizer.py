"""Torch-free CLIP BPE tokenizer: the same ids as open_clip's SimpleTokenizer, loaded in ~20 ms.

The cold query path must not import torch/open_clip, so this module re-implements open_clip's
`SimpleTokenizer` (clean, pre-tokenise, byte-level BPE, SOT/EOT, truncation) on numpy only.
`tests/test_tokenizer.py` checks it token-for-token against open_clip.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_CONTEXT_LENGTH = 77
# open_clip keeps merges[1 : 49152 - 256 - 2 + 1] of the vocab file: the first line is a header.
MAX_MERGES = 49152 - 256 - 2
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
CLEAN_MODES = ("lower", "whitespace", "canonicalize")
MERGES_HEADER = "#imgsearch bpe merges (open_clip SimpleTokenizer order)"

_PUNCTUATION = str.maketrans("", "", string.punctuation)
# Text that ftfy provably leaves alone: printable ASCII, the whitespace str.split() drops
# anyway, and precomposed Hangul syllables (already NFC, in none of ftfy's mojibake classes;
# tests/test_tokenizer.py checks all 11,172 and random mixes). No "&" (ftfy would unescape
# entities once more than html.unescape twice does).
_PLAIN_TEXT = re.compile(r"[\x20-\x25\x27-\x7e\t\n\r\uac00-\ud7a3]*")
# open_clip's pre-tokeniser needs the `regex` module's \p{L} and \p{N} (a ~10 ms import). On
# plain text (above, after cleaning) they are exactly [A-Za-z] plus the Hangul syllables and
# [0-9], which the standard `re` matches the same; other text loads `regex`.
_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d|{L}+|{N}|[^\s{l}{n}]+"
_PLAIN_WORDS = _WORDS.format(L="[A-Za-z\uac00-\ud7a3]", N="[0-9]", l="A-Za-z\uac00-\ud7a3", n="0-9")
_UNICODE_WORDS = _WORDS.format(L="[\\p{L}]", N="[\\p{N}]", l="\\p{L}", n="\\p{N}")


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """Printable stand-in char per byte, so BPE never sees whitespace/control bytes.

    Insertion order matters: it is the order of the first 256 vocab ids (printable bytes first).
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    kept += range(ord("®"), ord("ÿ") + 1)
    table: dict[int, str] = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_merges(path: Path) -> list[str]:
    """Merge rules ("a b" strings, best first) from open_clip's .txt.gz or our plain .txt copy."""
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return text.split("\n")[1 : MAX_MERGES + 1]


def write_merges(merges: Iterable[str], dest: Path) -> None:
    """Write merges as plain UTF-8 (header + one "a b" per line): 5x faster to load than the gz."""
    Path(dest).write_text("\n".join([MERGES_HEADER, *merges]) + "\n", encoding="utf-8")


def _fix_text(text: str) -> str:
    """ftfy.fix_text, skipped where it is the identity (ASCII, Hangul): saves a 50-250 ms import."""
    if _PLAIN_TEXT.fullmatch(text):
        return text
    import ftfy  # lazy: only non-ASCII / entity text needs it

    return ftfy.fix_text(text)


def clean_text(text: str, mode: str = "lower") -> str:
    """open_clip's cleaning: ftfy, double HTML unescape, then per-mode whitespace/case/punct."""
    text = html.unescape(html.unescape(_fix_text(text))).strip()
    if mode == "lower":
        return " ".join(text.split()).lower()
    if mode == "whitespace":
        return " ".join(text.split())
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
        return " ".join(text.split())
    raise ValueError(f"unknown clean mode {mode!r}; expected one of {CLEAN_MODES}")


class Tokenizer:
    """CLIP byte-level BPE tokenizer producing the ids open_clip's SimpleTokenizer would."""

    def __init__(
        self,
        merges_path: Path,
        *,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        clean: str = "lower",
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        bpe_cache_size: int = 65536,
    ) -> None:
        if clean not in CLEAN_MODES:
            raise ValueError(f"unknown clean mode {clean!r}; expected one of {CLEAN_MODES}")
        if list(special_tokens[:2]) != list(SPECIAL_TOKENS):
            raise ValueError(f"special tokens must start with {SPECIAL_TOKENS}")
        merges = read_merges(merges_path)
        alphabet = list(byte_alphabet().values())
        vocab = [*alphabet, *(c + "</w>" for c in alphabet)]
        if merges:  # each "a b" merge adds the token "ab" (one replace over all: faster)
            vocab += "\n".join(merges).replace(" ", "").split("\n")
        vocab += special_tokens
        # dict(zip(...)) builds in C: ~2x faster than a comprehension over 49k entries, which
        # a cold query pays for. Later duplicates win, as in open_clip's comprehension.
        self.encoder: dict[str, int] = dict(zip(vocab, range(len(vocab)), strict=True))
        self.ranks: dict[str, int] = dict(zip(merges, range(len(merges)), strict=True))
        self.context_length = context_length
        self.clean = clean
        self.special_tokens = tuple(special_tokens)
        self.sot_id = self.encoder[SPECIAL_TOKENS[0]]
        self.eot_id = self.encoder[SPECIAL_TOKENS[1]]
        self.vocab_size = len(self.encoder)
        self._byte_map = byte_alphabet()
        self._specials = "|".join(re.escape(t) for t in special_tokens)
        self._plain = re.compile(f"{self._specials}|{_PLAIN_WORDS}", re.IGNORECASE)
        self._unicode: Any = None  # compiled with `regex` on the first non-plain text
        self._bpe = lru_cache(maxsize=bpe_cache_size)(self._bpe_uncached)

    def _pattern(self, cleaned: str) -> Any:
        """open_clip's pre-tokeniser for `cleaned`: `re` on plain text, else `regex`."""
        if _PLAIN_TEXT.fullmatch(cleaned):
            return self._plain
        if self._unicode is None:
            import regex

            self._unicode = regex.compile(f"{self._specials}|{_UNICODE_WORDS}", regex.IGNORECASE)
        return self._unicode

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        """Greedy BPE: repeatedly merge every occurrence of the lowest-ranked adjacent pair."""
        if word in self.special_tokens:
            return (word,)
        symbols = [*word[:-1], word[-1] + "</w>"]
        ranks = self.ranks
        while len(symbols) > 1:
            best_rank = None
            best = ""
            for left, right in zip(symbols, symbols[1:], strict=False):
                rank = ranks.get(f"{left} {right}")
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best = rank, f"{left} {right}"
            if best_rank is None:
                break
            first, second = best.split(" ")
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return tuple(symbols)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without SOT/EOT and without truncation."""
        ids: list[int] = []
        byte_map = self._byte_map
        cleaned = clean_text(text, self.clean)
        for piece in self._pattern(cleaned).findall(cleaned):
            word = "".join(byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[sym] for sym in self._bpe(word))
        return ids

    def encode_batch(
        self, texts: Sequence[str], context_length: int | None = None
    ) -> list[list[int]]:
        """SOT + ids + EOT per text, cut to context length with EOT kept last (as open_clip)."""
        limit = context_length or self.context_length
        out = []
        for text in texts:
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > limit:
                ids = ids[:limit]
                ids[-1] = self.eot_id
            out.append(ids)
        return out

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> npt.NDArray[np.int64]:
        """(N, context_length) int64 ids, zero-padded: what open_clip's tokenizer returns."""
        if isinstance(texts, str):
            texts = [texts]
        limit = context_length or self.context_length
        return pad(self.encode_batch(texts, limit), limit)


def pad(rows: Sequence[Sequence[int]], length: int | None = None) -> npt.NDArray[np.int64]:
    """Zero-pad id lists into an (N, length) int64 array; length defaults to the longest row."""
    width = length if length is not None else max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
