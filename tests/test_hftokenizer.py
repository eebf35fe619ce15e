"""The torch-free HF tokenizer gives exactly open_clip's HFTokenizer ids (golden corpus)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from imgsearch import hftokenizer
from imgsearch.errors import ImgsearchError
from tests.support.hfmodels import make_bert_tokenizer, make_nllb_tokenizer, make_xlmr_tokenizer

KOREAN = [
    "빨간 원",
    "바닷가에서 뛰어노는 강아지",
    "서울의 야경, 남산타워와 한강",
    "할머니와 손녀가 김치를 담그는 모습",
    "눈 덮인 설악산의 겨울 풍경입니다.",
]
GOLDEN = [
    *KOREAN,
    *(unicodedata.normalize("NFD", t) for t in KOREAN),  # decomposed syllables (macOS file names)
    "ㅂㅏㄹㄱㅏㄴ ㅇㅝㄴ",  # compatibility jamo
    "\u1108\u1161\u11af\u1100\u1161\u11ab",  # conjoining jamo, as typed mid-composition
    "빨간 circle 과 a red 원",
    "a photo of 빨간 원.",
    "강아지 🐶 와 고양이 🐱, 그리고 👨‍👩‍👧‍👦 가족 사진 🇰🇷",
    "ＦＵＬＬＷＩＤＴＨ 한글 １２３",
    "&amp; &lt;b&gt;빨간&lt;/b&gt; 원",
    "  여러   칸의\t공백\n줄바꿈  ",
    "",
    "x",
    "A RED CIRCLE",
    "東京の夜景 and 北京烤鸭 and Москва",
    "빨간 원 " * 40,  # longer than any context: truncated with the special token kept
    "a very long caption " + "with many repeated words " * 30,
]
TRAIN = [*KOREAN, "a red circle", "a blue square", "빨간 원", "파란 사각형", "노란 별"] * 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-tokenizers")
    return {
        "xlmr": make_xlmr_tokenizer(root / "xlmr", TRAIN),
        "nllb": make_nllb_tokenizer(root / "nllb", TRAIN),
        "bert": make_bert_tokenizer(root / "bert", TRAIN),
    }


def exported(oc_tokenizer, dest: Path) -> hftokenizer.HFTextTokenizer:
    dest.mkdir(parents=True, exist_ok=True)
    return hftokenizer.load(dest, hftokenizer.describe(oc_tokenizer, dest))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("xlmr", {}),
        ("xlmr", {"context_length": 8}),
        ("xlmr", {"clean": "lower"}),
        ("xlmr", {"clean": "canonicalize"}),
        ("nllb", {}),
        ("bert", {"clean": "lower", "strip_sep_token": True, "context_length": 12}),
        ("bert", {}),
    ],
    ids=["xlmr", "xlmr-ctx8", "xlmr-lower", "xlmr-canon", "nllb", "bert-stripsep", "bert"],
)
def test_same_ids_as_open_clip(name: str, kwargs: dict, folders, tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    theirs = HFTokenizer(str(folders[name]), **{"context_length": 32, **kwargs})
    ours = exported(theirs, tmp_path / "export")
    expected = theirs(GOLDEN).numpy()
    got = ours(GOLDEN)
    assert got.dtype == np.int64 and got.shape == expected.shape
    mismatched = [GOLDEN[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not mismatched, f"{len(mismatched)} texts differ, e.g. {mismatched[:3]!r}"
    longest = (expected != theirs.tokenizer.pad_token_id).sum(1).max()
    assert longest >= expected.shape[1] - 1  # some rows were cut (strip_sep zeroes the last)
    assert len(set(map(tuple, expected.tolist()))) > len(GOLDEN) // 2  # not all <unk>


@pytest.mark.parametrize("lang", ["kor_Hang", "jpn_Jpan", "eng_Latn"])
def test_nllb_language_prefix(lang: str, folders, tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    theirs = HFTokenizer(str(folders["nllb"]), context_length=16)
    ours = exported(theirs, tmp_path / "export")
    default = ours(GOLDEN)
    np.testing.assert_array_equal(default, theirs(GOLDEN).numpy())
    # open_clip's set_language() is undone by transformers on every call (it re-applies
    # src_lang), so the language is switched the way transformers itself does it.
    theirs.tokenizer.src_lang = lang
    got = ours(GOLDEN, lang=lang)
    np.testing.assert_array_equal(got, theirs(GOLDEN).numpy())
    assert (got[:, 0] == theirs.tokenizer.convert_tokens_to_ids(lang)).all()
    np.testing.assert_array_equal(ours(GOLDEN), default)  # lang=None: back to the default


def test_unknown_language_code_is_a_clear_error(folders, tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    ours = exported(HFTokenizer(str(folders["nllb"])), tmp_path / "export")
    with pytest.raises(ImgsearchError, match="kor_Kore.*kor_Hang"):
        ours(["빨간 원"], lang="kor_Kore")


def test_non_nllb_tokenizers_ignore_language(folders, tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    ours = exported(HFTokenizer(str(folders["xlmr"])), tmp_path / "export")
    assert not ours.takes_language
    np.testing.assert_array_equal(ours(KOREAN, lang="kor_Hang"), ours(KOREAN))


def test_loads_without_torch_or_transformers(folders, tmp_path: Path) -> None:
    from open_clip.tokenizer import HFTokenizer

    dest = tmp_path / "export"
    dest.mkdir()
    cfg = hftokenizer.describe(HFTokenizer(str(folders["xlmr"])), dest)
    code = (
        "import sys; from pathlib import Path; from imgsearch import hftokenizer; "
        f"t = hftokenizer.load(Path({str(dest)!r}), {cfg!r}); ids = t(['빨간 원']); "
        "heavy = {'torch', 'transformers', 'open_clip'} & set(sys.modules); "
        "assert not heavy, heavy; print(ids.tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("[[0, ")
