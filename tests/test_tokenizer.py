"""The torch-free tokenizer gives exactly open_clip's SimpleTokenizer ids."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.tokenizer import Tokenizer, clean_text, pad, read_merges, write_merges

HANDWRITTEN = [
    "",
    " ",
    "\t\n\r ",
    "a dog on a beach",
    "A Dog On A BEACH",
    "  lots   of\twhite\n\nspace  ",
    "don't can't I'LL we'VE they're she's it'd I'm",
    "hello, world! (really?) [yes] {no} <maybe> ...",
    "#hashtag @mention $100 50% a+b=c x*y/z ~tilde^ `tick` |pipe| back\\slash",
    "1234567890 3.14159 1,000,000 2024-01-31 12:30",
    "IMG_2041.JPG DSC00042.jpeg photo_2019_summer.png",
    "café crème brûlée naïve façade",
    "cafe\u0301 (decomposed accent)",
    "Straße Ärger Øresund Łódź İstanbul",
    "東京タワーの夜景",
    "北京烤鸭 and 上海",
    "서울 맛집",
    "Москва красная площадь",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "ภาษาไทย",
    "emoji 🐶🌊🏖️ 👨‍👩‍👧‍👦 🇫🇷 👍🏽",
    "😀😀😀😀😀😀😀😀😀😀",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;apos&#39; &eacute; &#x1F600;",
    "&amp;amp;amp; triple escaped",
    "a & b && c &&& d",
    "<start_of_text> literal special tokens <end_of_text>",
    "<START_OF_TEXT> upper specials <End_Of_Text>",
    "\u201ccurly quotes\u201d \u2018single\u2019 \u2014 em dash \u2013 en dash \u2026",
    "ﬁne ﬂower ligatures",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ １２３",
    "cafÃ© mojibake â€œquotedâ€\x9d",
    "zero\u200bwidth\u200cjoiner\u200d and \ufeffbom",
    "control\x00chars\x07here\x0bvertical\x0cform\x1b[31mred\x1b[0m\x7fdel",
    "crlf\r\nline\rbreaks",
    "non\u00a0breaking\u2003em space\u3000ideographic",
    "superscript x² ½ ⅓ ① Ⅻ",
    "mixed123numbers456and789letters",
    "UPPERCASE lowercase CamelCase snake_case kebab-case",
    "a" * 300,
    "supercalifragilisticexpialidocious " * 40,
    "word " * 200,
    "🐶" * 100,
    "x",
    "?",
    "'",
    "'s",
    "...",
]

ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \t\n!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    "éèêëàâäôöûüçñßøåÉÀÖÜ"
    "东京北京上海日本語カタカナひらがな한국어"
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    "αβγδεζηθ"
    "🐶🌊🏖😀👍🏽🇫🇷"
    "\u00a0\u200b\u2019\u201c\u201d\u2014"
)
ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&eacute;", "&nbsp;", "&#x263A;"]


def random_texts(n: int, seed: int) -> list[str]:
    """Random strings over a mixed-script alphabet, with words, entities and specials."""
    rng = random.Random(seed)
    words = ["dog", "beach", "photo", "of", "the", "a", "CAT", "Sunset", "don't", "it's"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(0, 30)):
            kind = rng.random()
            if kind < 0.5:
                parts.append("".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 8))))
            elif kind < 0.8:
                parts.append(rng.choice(words))
            elif kind < 0.95:
                parts.append(rng.choice(ENTITIES))
            else:
                parts.append(rng.choice(["<start_of_text>", "<end_of_text>"]))
        texts.append(rng.choice([" ", "", "  "]).join(parts))
    return texts


def random_ascii(n: int, seed: int) -> list[str]:
    """Random ASCII including control chars, CR and '&': the edges of the ftfy shortcut."""
    rng = random.Random(seed)
    pool = [chr(c) for c in range(128)] + list("&amp;&lt;\r\n") * 4
    return ["".join(rng.choice(pool) for _ in range(rng.randrange(0, 60))) for _ in range(n)]


CORPUS = HANDWRITTEN + random_texts(300, seed=1) + random_ascii(100, seed=2)


@pytest.fixture(scope="module")
def oc_tokenizer_module():
    from open_clip import tokenizer

    return tokenizer


@pytest.fixture(scope="module")
def merges_txt(tmp_path_factory: pytest.TempPathFactory, oc_tokenizer_module) -> Path:
    path = tmp_path_factory.mktemp("bpe") / "bpe_merges.txt"
    write_merges(read_merges(Path(oc_tokenizer_module.default_bpe())), path)
    return path


@pytest.mark.parametrize("clean", ["lower", "whitespace", "canonicalize"])
def test_same_ids_as_open_clip(clean: str, merges_txt: Path, oc_tokenizer_module) -> None:
    theirs = oc_tokenizer_module.SimpleTokenizer(clean=clean)
    ours = Tokenizer(merges_txt, clean=clean)
    expected = theirs(CORPUS).numpy()
    got = ours(CORPUS)
    assert got.dtype == np.int64 and got.shape == expected.shape == (len(CORPUS), 77)
    mismatched = [CORPUS[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not mismatched, f"{len(mismatched)} texts differ, e.g. {mismatched[:3]!r}"


@pytest.mark.parametrize("context_length", [5, 16, 77, 100])
def test_truncation_keeps_eot(context_length: int, merges_txt: Path, oc_tokenizer_module) -> None:
    theirs = oc_tokenizer_module.SimpleTokenizer()
    ours = Tokenizer(merges_txt)
    texts = HANDWRITTEN[-12:]
    got = ours(texts, context_length=context_length)
    np.testing.assert_array_equal(got, theirs(texts, context_length=context_length).numpy())
    cut = [len(ours.encode(t)) + 2 > context_length for t in texts]
    assert any(cut)
    assert (got[cut][:, -1] == ours.eot_id).all()


def test_vocab_and_specials_match(merges_txt: Path, oc_tokenizer_module) -> None:
    theirs = oc_tokenizer_module.SimpleTokenizer()
    ours = Tokenizer(merges_txt)
    assert ours.encoder == theirs.encoder
    assert (ours.sot_id, ours.eot_id) == (theirs.sot_token_id, theirs.eot_token_id)
    assert ours.vocab_size == theirs.vocab_size == 49408


def test_gz_and_plain_merges_load_the_same(merges_txt: Path, oc_tokenizer_module) -> None:
    from_gz = Tokenizer(Path(oc_tokenizer_module.default_bpe()))
    assert from_gz.encoder == Tokenizer(merges_txt).encoder
    assert from_gz.ranks == Tokenizer(merges_txt).ranks


def test_clean_matches_open_clip_on_ascii_edges(oc_tokenizer_module) -> None:
    """The ftfy shortcut for plain ASCII must not change what the cleaning produces."""
    for text in random_ascii(400, seed=3) + HANDWRITTEN:
        assert clean_text(text, "lower") == oc_tokenizer_module._clean_lower(text), repr(text)
        assert clean_text(text, "whitespace") == oc_tokenizer_module._clean_whitespace(text)


def test_ftfy_shortcut_holds_for_hangul() -> None:
    """Skipping ftfy for ASCII + Hangul syllables changes nothing: every syllable, random mixes."""
    import ftfy

    syllables = "".join(chr(c) for c in range(0xAC00, 0xD7A4))
    assert ftfy.fix_text(syllables) == syllables
    assert all(
        ftfy.fix_text(syllables[i : i + 40]) == syllables[i : i + 40]
        for i in range(0, len(syllables), 40)
    )
    rng = random.Random(5)
    pool = [chr(c) for c in range(0x20, 0x7F)] + list(" \t\n\r") + list(syllables[::37])
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 40)))
        for mode in ("lower", "whitespace", "canonicalize"):
            assert clean_text(text, mode) == clean_text_via_ftfy(text, mode), repr(text)


def clean_text_via_ftfy(text: str, mode: str) -> str:
    """open_clip's own clean functions (always ftfy)."""
    from open_clip import tokenizer as oc_tok

    return oc_tok.get_clean_fn(mode)(text)


def test_encode_batch_is_ragged_and_pad_fills_zeros(merges_txt: Path) -> None:
    ours = Tokenizer(merges_txt)
    rows = ours.encode_batch(["a dog", "a dog on a beach at night"])
    assert [r[0] for r in rows] == [ours.sot_id] * 2 and [r[-1] for r in rows] == [ours.eot_id] * 2
    assert len(rows[0]) < len(rows[1])
    padded = pad(rows)
    assert padded.shape == (2, len(rows[1]))
    assert padded[0, len(rows[0]) :].tolist() == [0] * (len(rows[1]) - len(rows[0]))
    full = ours(["a dog", "a dog on a beach at night"])
    np.testing.assert_array_equal(padded, full[:, : padded.shape[1]])
    assert not full[:, padded.shape[1] :].any()


def test_bad_clean_mode_is_refused(merges_txt: Path) -> None:
    with pytest.raises(ValueError, match="clean mode"):
        Tokenizer(merges_txt, clean="shout")


def test_no_torch_or_open_clip_import(merges_txt: Path) -> None:
    code = (
        "import sys; from imgsearch.tokenizer import Tokenizer; "
        f"Tokenizer({str(merges_txt)!r})(['café 🐶 &amp; dog']); "
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
