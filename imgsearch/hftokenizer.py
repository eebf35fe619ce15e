"""Torch-free Hugging Face tokenizer: open_clip's `HFTokenizer` ids from tokenizer.json alone.

Multilingual towers (XLM-R, NLLB, mT5, SigLIP i18n / Gemma) tokenize with a Hugging Face
tokenizer. open_clip loads it through `transformers` (which imports torch); the Rust `tokenizers`
library runs the same pipeline from the tokenizer.json that `describe` takes from the loaded
tokenizer at export time. On top of it this module re-applies what `HFTokenizer.__call__` adds:
the clean function, truncation to the context length (special tokens kept), padding, the
optional SEP stripping and NLLB's source-language token. `tests/test_hftokenizer.py` compares
ids with open_clip's tokenizer on a golden corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgsearch.errors import ImgsearchError
from imgsearch.tokenizer import CLEAN_MODES, clean_text

TOKENIZER_FILE = "tokenizer.json"
KIND = "hf"


class HFTextTokenizer:
    """Ids as open_clip's HFTokenizer returns them, from `tokenizers` + numpy only."""

    def __init__(
        self,
        path: Path,
        *,
        context_length: int,
        clean: str = "whitespace",
        pad_id: int = 0,
        truncation_side: str = "right",
        strip_sep_id: int | None = None,
        language: dict[str, Any] | None = None,
    ) -> None:
        """`language` (NLLB): {"default", "legacy", "eos"}: see `describe`."""
        from tokenizers import Tokenizer

        if clean not in CLEAN_MODES:
            raise ValueError(f"unknown clean mode {clean!r}; expected one of {CLEAN_MODES}")
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.enable_truncation(context_length, direction=truncation_side)
        self._default_processor = self._tok.post_processor
        self._current_lang: str | None = None
        self.path = Path(path)
        self.context_length = context_length
        self.clean = clean
        self.pad_id = pad_id
        self.strip_sep_id = strip_sep_id
        self.language = language

    @property
    def takes_language(self) -> bool:
        """True for tokenizers with a source-language token (NLLB)."""
        return self.language is not None

    def set_language(self, code: str | None) -> None:
        """Use `code`'s language token (NLLB), or the exported default for None."""
        if self.language is None or code == self._current_lang:
            return
        if code is None:
            self._tok.post_processor = self._default_processor
            self._current_lang = None
            return
        from tokenizers import processors

        lang_id = self._tok.token_to_id(code)
        if lang_id is None:
            raise ImgsearchError(
                f"language code {code!r} is not known to the tokenizer in {self.path}; "
                f"NLLB codes look like kor_Hang, eng_Latn, jpn_Jpan (--lang / setting 'lang')"
            )
        eos = self.language["eos"]
        eos_id = self._tok.token_to_id(eos)
        if self.language["legacy"]:
            single, pair = ["$A", eos, code], ["$A", "$B", eos, code]
        else:
            single, pair = [code, "$A", eos], [code, "$A", "$B", eos]
        self._tok.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(eos, eos_id), (code, lang_id)]
        )
        self._current_lang = code

    def encode_batch(self, texts: Sequence[str], lang: str | None = None) -> list[list[int]]:
        """Cleaned, tokenized, special tokens added, cut to the context length; no padding."""
        self.set_language(lang)
        cleaned = [clean_text(t, self.clean) for t in texts]
        rows = [enc.ids for enc in self._tok.encode_batch(cleaned)]
        if self.strip_sep_id is not None:
            sep = self.strip_sep_id
            rows = [[0 if i == sep else i for i in row] for row in rows]
        return rows

    def pad(
        self, rows: Sequence[Sequence[int]], length: int | None = None
    ) -> npt.NDArray[np.int64]:
        """(N, length) int64 ids padded with the pad id; length defaults to the longest row."""
        width = length if length is not None else max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def __call__(
        self, texts: str | Sequence[str], lang: str | None = None
    ) -> npt.NDArray[np.int64]:
        """(N, context_length) ids: what open_clip's HFTokenizer returns (as numpy)."""
        if isinstance(texts, str):
            texts = [texts]
        return self.pad(self.encode_batch(texts, lang), self.context_length)


def load(folder: Path, cfg: dict[str, Any]) -> HFTextTokenizer:
    """The tokenizer an export manifest's `tokenizer` entry describes."""
    return HFTextTokenizer(
        Path(folder) / cfg["file"],
        context_length=cfg["context_length"],
        clean=cfg["clean"],
        pad_id=cfg["pad_id"],
        truncation_side=cfg.get("truncation_side", "right"),
        strip_sep_id=cfg.get("strip_sep_id"),
        language=cfg.get("language"),
    )


def describe(tokenizer: Any, dest: Path) -> dict[str, Any]:
    """Write `tokenizer`'s tokenizer.json into `dest`; return its manifest entry.

    `tokenizer` is an open_clip HFTokenizer. NotImplementedError when this module cannot
    reproduce it (a slow, Python-only tokenizer, the 'clips' mode, left padding).
    """
    from open_clip import tokenizer as oc_tok

    if not isinstance(tokenizer, oc_tok.HFTokenizer):
        raise NotImplementedError(f"not an open_clip HFTokenizer: {type(tokenizer).__name__}")
    if tokenizer.tokenizer_mode:
        raise NotImplementedError(f"HF tokenizer mode {tokenizer.tokenizer_mode!r}")
    hf = tokenizer.tokenizer
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise NotImplementedError(f"{type(hf).__name__} has no Rust tokenizer (tokenizer.json)")
    if getattr(hf, "padding_side", "right") != "right":
        raise NotImplementedError("left-padding HF tokenizers")
    clean = clean_mode(tokenizer)
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(backend.to_str())  # the pipeline as loaded, minus call settings
    plain.no_truncation()
    plain.no_padding()
    plain.save(str(Path(dest) / TOKENIZER_FILE))
    language = None
    if hasattr(tokenizer, "set_lang_fn"):
        language = {
            "default": getattr(hf, "src_lang", None),
            "legacy": bool(getattr(hf, "legacy_behaviour", False)),
            "eos": str(hf.eos_token),
        }
    return {
        "kind": KIND,
        "file": TOKENIZER_FILE,
        "context_length": int(tokenizer.context_length),
        "clean": clean,
        "pad_id": int(hf.pad_token_id if hf.pad_token_id is not None else 0),
        "truncation_side": str(getattr(hf, "truncation_side", "right")),
        "strip_sep_id": int(hf.sep_token_id) if tokenizer.strip_sep_token else None,
        "language": language,
        "vocab_size": int(backend.get_vocab_size()),
    }


def clean_mode(tokenizer: Any) -> str:
    """The name of an open_clip tokenizer's clean function, as export manifests record it
    (both tokenizer kinds); NotImplementedError for one we cannot reproduce."""
    from open_clip import tokenizer as oc_tok

    cleans = {
        oc_tok._clean_lower: "lower",
        oc_tok._clean_whitespace: "whitespace",
        oc_tok._clean_canonicalize: "canonicalize",
    }
    if tokenizer.clean_fn not in cleans:
        raise NotImplementedError(f"unknown tokenizer clean function {tokenizer.clean_fn!r}")
    return cleans[tokenizer.clean_fn]
