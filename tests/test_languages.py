"""The query language: from the setting / --lang, else detected from the text's script."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch import config, languages
from imgsearch.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("빨간 원", "kor_Hang"),
        ("a photo of 빨간 원.", "kor_Hang"),  # an English prompt template around Korean
        ("\u1108\u1161\u11af\u1100\u1161\u11ab", "kor_Hang"),  # conjoining jamo
        ("ㅂㅏㄹ", "kor_Hang"),  # compatibility jamo
        ("東京タワーの夜景", "jpn_Jpan"),  # kana wins over the Han it is mixed with
        ("北京烤鸭", "zho_Hans"),
        ("Москва", "rus_Cyrl"),
        ("ภาษาไทย", "tha_Thai"),
        ("a red circle", None),
        ("café crème brûlée", None),  # Latin with accents: the model's default language
        ("🐶 1234 !!", None),
        ("", None),
    ],
)
def test_detect(text: str, code: str | None) -> None:
    assert languages.detect(text) == code


def test_choose_prefers_the_setting() -> None:
    assert languages.choose("auto", "빨간 원") == "kor_Hang"
    assert languages.choose("jpn_Jpan", "빨간 원") == "jpn_Jpan"
    assert languages.choose("auto", "a red circle") is None


class FakeEncoder:
    """Records the language of each call; vectors say which language embedded them."""

    def __init__(self, takes_language: bool) -> None:
        self.takes_language = takes_language
        self.calls: list[tuple[list[str], str | None]] = []

    def embed(self, texts: list[str], lang: str | None = None) -> np.ndarray:
        self.calls.append((texts, lang))
        value = {None: 0.0, "kor_Hang": 1.0, "jpn_Jpan": 2.0}[lang]
        return np.full((len(texts), 2), value, dtype=np.float32)


def test_embed_groups_texts_by_language() -> None:
    enc = FakeEncoder(takes_language=True)
    out = languages.embed(enc.embed, ["빨간 원", "a red circle", "파란 별"], "auto")
    assert enc.calls == [(["빨간 원", "파란 별"], "kor_Hang"), (["a red circle"], None)]
    np.testing.assert_array_equal(out[:, 0], [1.0, 0.0, 1.0])
    enc.calls.clear()
    languages.embed(enc.embed, ["빨간 원", "a red circle"], "jpn_Jpan")
    assert enc.calls == [(["빨간 원", "a red circle"], "jpn_Jpan")]


def test_embed_leaves_other_encoders_alone() -> None:
    enc = FakeEncoder(takes_language=False)
    languages.embed(enc.embed, ["빨간 원"], "auto")
    assert enc.calls == [(["빨간 원"], None)]
    assert languages.embed(lambda texts: np.ones((len(texts), 2)), ["x"], "auto").shape == (1, 2)


def test_lang_setting_is_checked() -> None:
    assert config.resolve(environ={}).lang == "auto"
    assert config.resolve(environ={"IMGSEARCH_LANG": "kor_Hang"}).lang == "kor_Hang"
    with pytest.raises(ConfigError, match="setting 'lang' must be auto or a language code"):
        config.resolve(environ={"IMGSEARCH_LANG": "korean"})


def test_bad_lang_flag_is_a_clean_error(run, tiny_model: str, pictures) -> None:
    run("index", str(pictures[0].parent), "--model", tiny_model, "-q")
    result = run("query", "빨간 원", "--lang", "Korean", code=1)
    assert "setting 'lang' must be auto or a language code such as kor_Hang" in result.stderr
