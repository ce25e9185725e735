"""Exactness of services.core.tokens against tiktoken, the reference, offline.

The reference encoder is tiktoken's own o200k_base definition (pattern and special
tokens from ``tiktoken_ext.openai_public``), fed the bundled vocabulary
``tests/data/o200k_base.tiktoken.gz`` instead of a download.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

from services.core.tokens import count_tokens, count_tokens_batch, truncate_tokens

# The hash OpenAI publishes for o200k_base.tiktoken (tiktoken checks downloads with it).
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
BUNDLED_VOCABULARY = Path(__file__).parents[2] / "data" / "o200k_base.tiktoken.gz"

CORPUS: dict[str, str] = {
    "empty": "",
    "single_space": " ",
    "english_prose": (
        "It's a truth universally acknowledged that a single model, in possession "
        "of a good context window, must be in want of more tokens. They'll say "
        "we'd've known; I'm sure you're right, but THEY'RE NOT."
    ),
    "python": (
        "def fib(n: int) -> int:\n"
        '    """Return the n-th Fibonacci number."""\n'
        "    a, b = 0, 1\n"
        "    for _ in range(n):\n"
        "        a, b = b, a + b\n"
        "    return a\n"
    ),
    "rust": (
        "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n"
        '\tprintln!("{:?}", v);\n}\n'
    ),
    "javascript": "const f = async (x) => { await fetch(`/api/${x}?q=1&r=2`); };",
    "sql": "SELECT id, SUM(cost_micros) FROM ledger WHERE tenant = 'a' GROUP BY 1;",
    "html": '<div class="a&amp;b"><p>Hello&nbsp;<b>world</b></p></div>',
    "json": (
        '{"model": "gpt-4.1-mini", "input": [{"role": "user", "content": "hi"}], '
        '"temperature": 0.2, "max_output_tokens": 512, "stream": false, "n": null}'
    ),
    "urls": (
        "https://platform.openai.com/docs/api-reference/responses?lang=python#create "
        "mailto:ops@example.org ftp://[::1]:2121/a%20b"
    ),
    "numbers_and_dates": (
        "1 12 123 1234 12345 1234567890 3.14159 -0.0001 1e-9 6.02e23 $1,234.56 "
        "2026-01-01T00:00:00Z 31/12/1999 12:34:56.789 +44 20 7946 0958"
    ),
    "whitespace_runs": "a  b   c    d\t\te\n\nf\r\n\r\ng \t \n h     \n\n\n   ",
    "only_newlines": "\n\n\n\r\n\r\r",
    "trailing_spaces": "ends with spaces      ",
    "emoji": "I ❤️ tokens 😀😃😄 🧠🔥 🇫🇷🇯🇵 ✔︎",
    "emoji_zwj": "👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🧑🏿‍🤝‍🧑🏻 👍🏻👍🏼👍🏽👍🏾👍🏿",
    "cjk": "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다。",
    "japanese_kana": "ひらがなとカタカナとｶﾀｶﾅ、そして漢字。",
    "arabic": "مرحبا بالعالم! هذه جملة باللغة العربية مع أرقام ١٢٣ و 456.",
    "hebrew": "שלום עולם, זה מבחן.",
    "hindi": "नमस्ते दुनिया! यह हिंदी में एक वाक्य है।",
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "greek": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "thai": "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "mixed_scripts": "Hello мир 世界 عالم दुनिया 🌍 κόσμος abc123def",
    "combining_characters": "e\u0301 a\u0300\u0301\u0302 Z\u0351\u0352\u0353 n\u0303o",
    "precomposed_vs_decomposed": "caf\u00e9 cafe\u0301 \u00c5 A\u030a",
    "long_word": "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20,
    "long_identifier": "get_" + "_".join(["very_long_snake_case_name"] * 30),
    "special_token_text": "<|endoftext|> and <|endofprompt|> are plain text here",
    "special_token_alone": "<|endoftext|>",
    "contractions_upper": "IT'S DON'T WE'LL YOU'VE I'D SHE'S O'NEILL",
    "apostrophe_variants": "it\u2019s it's it`s it\u00b4s",
    "control_characters": "a\x00b\x01c\x07d\x1be\x7ff",
    "private_use_and_noncharacters": "\ue000\uf8ff\U000f0000\ufdd0\ufffe\U0010ffff",
    "bom_and_zero_width": "\ufeffword\u200bbreak\u200cjoin\u200d\u2060",
}


@pytest.fixture(scope="module")
def vocabulary_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiktoken") / "o200k_base.tiktoken"
    path.write_bytes(gzip.decompress(BUNDLED_VOCABULARY.read_bytes()))
    return path


@pytest.fixture(scope="module")
def reference(vocabulary_path: Path) -> Any:
    """tiktoken's o200k_base, loaded from the bundled file without network."""
    requested_hashes: list[str | None] = []

    def load_bundled(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        requested_hashes.append(expected_hash)
        return tiktoken.load.load_tiktoken_bpe(
            str(vocabulary_path), expected_hash=expected_hash
        )

    with (
        pytest.MonkeyPatch.context() as env,
        mock.patch.object(openai_public, "load_tiktoken_bpe", load_bundled),
    ):
        env.setenv("TIKTOKEN_CACHE_DIR", "")  # no copy in the machine-wide cache
        definition = openai_public.o200k_base()
    # tiktoken itself asks for the published hash, so the file is the real one.
    assert requested_hashes == [O200K_BASE_SHA256]
    assert definition["special_tokens"] == O200K_SPECIAL_TOKENS
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=definition["pat_str"],
        mergeable_ranks=definition["mergeable_ranks"],
        special_tokens=O200K_SPECIAL_TOKENS,
    )


def _reference_count(reference: Any, text: str) -> int:
    return len(reference.encode_ordinary(text))


def _random_scalar(rng: random.Random) -> str:
    """A random Unicode scalar value, biased towards the commoner planes."""
    while True:
        limit = rng.choice([0x80, 0x800, 0x3000, 0x10000, 0x110000])
        code_point = rng.randrange(limit)
        if not 0xD800 <= code_point <= 0xDFFF:  # surrogates are not scalars
            return chr(code_point)


def _random_unicode_corpus(seed: int, size: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(_random_scalar(rng) for _ in range(rng.randrange(0, 64)))
        for _ in range(size)
    ]


def _random_piece_corpus(seed: int, size: int) -> list[str]:
    """Strings glued from pieces that sit on the pre-tokenizer's edges."""
    pieces = [
        *(" ", "  ", "\t", "\n", "\r\n", "\u00a0", "'s", "'LL", "_", "-", "/"),
        *("a", "A", "é", "ß", "Hello", "WORLD", "camelCase", "1", "12345"),
        *(".", "...", "!?", "😀", "👍🏽", "中", "\u0301", "\u200d", "<|endoftext|>"),
    ]
    rng = random.Random(seed)
    return [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 24)))
        for _ in range(size)
    ]


RANDOM_CORPUS = _random_unicode_corpus(seed=20260101, size=300) + _random_piece_corpus(
    seed=7, size=300
)


def test_bundled_vocabulary_has_the_published_hash(vocabulary_path: Path) -> None:
    contents = vocabulary_path.read_bytes()
    assert hashlib.sha256(contents).hexdigest() == O200K_BASE_SHA256
    assert contents.count(b"\n") == 199_998  # ranks 0..199997, one per line


@pytest.mark.parametrize("text", CORPUS.values(), ids=CORPUS.keys())
def test_count_tokens_matches_tiktoken(reference: Any, text: str) -> None:
    assert count_tokens(text) == _reference_count(reference, text)


def test_count_tokens_matches_tiktoken_on_random_text(reference: Any) -> None:
    mismatches = [
        text
        for text in RANDOM_CORPUS
        if count_tokens(text) != _reference_count(reference, text)
    ]
    assert mismatches == []


def test_count_tokens_batch_matches_tiktoken_in_order(reference: Any) -> None:
    texts = [*CORPUS.values(), *RANDOM_CORPUS]
    assert count_tokens_batch(texts) == [
        _reference_count(reference, text) for text in texts
    ]


@pytest.mark.parametrize("length", [4095, 4096, 4097, 9000])
def test_counts_are_exact_on_both_sides_of_the_short_text_path(
    reference: Any, length: int
) -> None:
    # Short texts take the tokenizer's single-text count, long ones the batch
    # counter: the same numbers either way, alone or mixed in one batch.
    text = "".join(RANDOM_CORPUS)[:length]
    expected = _reference_count(reference, text)

    assert len(text) == length
    assert count_tokens(text) == expected
    assert count_tokens_batch(["Hello", text]) == [
        _reference_count(reference, "Hello"),
        expected,
    ]


def test_count_tokens_batch_of_nothing_is_empty() -> None:
    assert count_tokens_batch([]) == []


def test_special_token_strings_count_as_ordinary_text(reference: Any) -> None:
    for special in O200K_SPECIAL_TOKENS:
        assert count_tokens(special) == _reference_count(reference, special)
        assert count_tokens(special) > 1


def test_empty_text_has_no_tokens() -> None:
    assert count_tokens("") == 0


PATHOLOGICAL: dict[str, str] = {
    "letter": "a" * 100_000,
    "space": " " * 100_000,
    "newline": "\n" * 100_000,
    "tab": "\t" * 100_000,
    "digit": "7" * 100_000,
    "punctuation": "." * 100_000,
    "emoji": "😀" * 100_000,
    "cjk": "中" * 100_000,
    "combining_mark": "e" + "\u0301" * 99_999,
    "two_letters": "ab" * 50_000,
    "word_and_space": "a " * 50_000,
    "zwj_family": "👨‍👩‍👧" * 20_000,
}


@pytest.mark.parametrize("text", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_count_tokens_is_exact_on_100k_repeated_characters(
    reference: Any, text: str
) -> None:
    # tiktoken 0.14 handles all of these in well under a second, so every case is
    # compared with it rather than with a formula.
    assert count_tokens(text) == _reference_count(reference, text)


def test_one_token_per_repeated_emoji_and_cjk_character() -> None:
    # Known counts that do not depend on the reference: these characters never merge.
    assert count_tokens("😀" * 100_000) == 100_000
    assert count_tokens("中" * 100_000) == 100_000


def _reference_cut(reference: Any, text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` tokens, minus any partial character at the end."""
    kept = reference.decode_bytes(reference.encode_ordinary(text)[:max_tokens])
    return str(kept.decode("utf-8", errors="ignore"))


def _caps(total: int) -> set[int]:
    return {0, 1, 2, total // 3, total // 2, max(total - 1, 0), total, total + 5}


def test_truncate_tokens_matches_tiktoken(reference: Any) -> None:
    for text in [*CORPUS.values(), *RANDOM_CORPUS]:
        total = _reference_count(reference, text)
        for cap in _caps(total):
            result = truncate_tokens(text, cap)
            assert text.startswith(result.text)
            assert result.text == _reference_cut(reference, text, cap)
            assert result.original_tokens == total
            assert result.kept_tokens == _reference_count(reference, result.text)
            assert result.kept_tokens <= cap
            assert result.truncated is (result.text != text)


def test_truncate_tokens_never_splits_a_character() -> None:
    # "🧠" is three byte-level tokens: a cut after one or two would split it.
    assert count_tokens("🧠") == 3
    for cap, kept in [(0, ""), (1, ""), (2, ""), (3, "🧠"), (4, "🧠"), (5, "🧠")]:
        result = truncate_tokens("🧠🧠", cap)
        assert result.text == kept
        assert "\ufffd" not in result.text
        assert "🧠🧠".encode().startswith(result.text.encode())
        assert result.original_tokens == 6
        assert result.kept_tokens == count_tokens(kept)


def test_truncate_tokens_keeps_text_within_the_cap_whole() -> None:
    result = truncate_tokens("hello world", 2)
    assert result.text == "hello world"
    assert (result.original_tokens, result.kept_tokens) == (2, 2)
    assert not result.truncated


def test_truncate_tokens_cuts_on_a_token_boundary() -> None:
    result = truncate_tokens("hello world", 1)
    assert result.text == "hello"
    assert (result.original_tokens, result.kept_tokens) == (2, 1)
    assert result.truncated


def test_truncate_tokens_handles_100k_repeated_characters(reference: Any) -> None:
    for text in PATHOLOGICAL.values():
        result = truncate_tokens(text, 1000)
        assert result.text == _reference_cut(reference, text, 1000)
        assert result.kept_tokens == count_tokens(result.text) <= 1000
        assert result.original_tokens == count_tokens(text)
