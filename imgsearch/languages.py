"""Query language for models whose tokenizer takes one (NLLB): `--lang`, else the text's script.

NLLB-CLIP prefixes every text with a language token (kor_Hang, eng_Latn, ...). The setting
`lang` (flag `--lang`) names it; "auto" picks it from the script of the text, which for Hangul,
kana, Thai, Greek and most Indic scripts names the language outright. For scripts that several
languages share (Han, Cyrillic, Arabic, Devanagari) the most used one is taken and `--lang`
chooses another; Latin text keeps the model's default (eng_Latn). Other models ignore it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

AUTO = "auto"
CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")  # NLLB / FLORES-200: language_Script
# (Unicode script, NLLB code), checked in order: kana before Han, so Japanese is not Chinese.
SCRIPTS: tuple[tuple[str, str], ...] = (
    ("Hangul", "kor_Hang"),
    ("Hiragana", "jpn_Jpan"),
    ("Katakana", "jpn_Jpan"),
    ("Thai", "tha_Thai"),
    ("Greek", "ell_Grek"),
    ("Hebrew", "heb_Hebr"),
    ("Armenian", "hye_Armn"),
    ("Georgian", "kat_Geor"),
    ("Khmer", "khm_Khmr"),
    ("Lao", "lao_Laoo"),
    ("Myanmar", "mya_Mymr"),
    ("Ethiopic", "amh_Ethi"),
    ("Tamil", "tam_Taml"),
    ("Telugu", "tel_Telu"),
    ("Kannada", "kan_Knda"),
    ("Malayalam", "mal_Mlym"),
    ("Gujarati", "guj_Gujr"),
    ("Gurmukhi", "pan_Guru"),
    ("Bengali", "ben_Beng"),
    ("Sinhala", "sin_Sinh"),
    ("Tibetan", "bod_Tibt"),
    # Shared scripts: the most used language; --lang picks another (zho_Hant, ukr_Cyrl, ...).
    ("Han", "zho_Hans"),
    ("Cyrillic", "rus_Cyrl"),
    ("Arabic", "arb_Arab"),
    ("Devanagari", "hin_Deva"),
)


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[Any, str]]:
    import regex

    return [(regex.compile(rf"\p{{{script}}}"), code) for script, code in SCRIPTS]


def detect(text: str) -> str | None:
    """NLLB code of the first telling script in `text`; None for Latin-only or script-less text."""
    if text.isascii():
        return None
    for pattern, code in _patterns():
        if pattern.search(text):
            return code
    return None


def choose(setting: str, text: str) -> str | None:
    """The language code for `text` under the `lang` setting ("auto" or a code)."""
    return detect(text) if setting == AUTO else setting


def valid_setting(value: str) -> bool:
    """Whether `value` is auto or a language_Script code such as kor_Hang."""
    return value == AUTO or bool(CODE.match(value))


def embed(
    encode: Callable[..., npt.NDArray[np.float32]], texts: Sequence[str], setting: str
) -> npt.NDArray[np.float32]:
    """`encode(texts)`, passing `lang=` per group of texts when the encoder takes a language."""
    owner = getattr(encode, "__self__", None)
    if not getattr(owner, "takes_language", False):
        return encode(list(texts))
    codes = [choose(setting, t) for t in texts]
    if len(set(codes)) == 1:
        return encode(list(texts), lang=codes[0])
    import numpy as np

    out: npt.NDArray[np.float32] | None = None
    for code in dict.fromkeys(codes):
        rows = [i for i, c in enumerate(codes) if c == code]
        vecs = encode([texts[i] for i in rows], lang=code)
        if out is None:
            out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        out[rows] = vecs
    assert out is not None
    return out
