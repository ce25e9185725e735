"""Exact o200k_base token counting, offline.

The vocabulary is compiled into ``toktok`` (a Rust BPE with tiktoken-identical
ids), so nothing is downloaded at run time. Counting never builds the ids and is
linear in the input, so pathological input (100,000 repeated characters) costs
milliseconds, not the quadratic merge time of a naive BPE.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import toktok

ENCODING = "o200k_base"

# Counting releases the GIL; one thread per call keeps the event loop's latency
# predictable on small machines instead of fanning out across every core.
_THREADS = 1
# ``batch_count`` costs about 15-45 us per call and text before it counts a byte;
# the tokenizer's single-text ``count`` (the same ordinary-text count) about 3 us,
# but it is slower per character. Up to this many characters, ``count`` wins on
# every input bench/tokens.py times, pathological ones included.
_SHORT = 4096


@functools.cache
def _tokenizer() -> Any:
    # toktok's cached tokenizer (built on first use: the vocabulary, ~63 MB).
    return toktok._encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Return the exact number of o200k_base tokens in ``text``."""
    if len(text) <= _SHORT:
        short: int = _tokenizer().count(text)
        return short
    counts: list[int] = toktok.batch_count([text], ENCODING, _THREADS)
    return counts[0]


def count_tokens_batch(texts: list[str]) -> list[int]:
    """Return the exact o200k_base token count of each text, in order."""
    if all(len(text) <= _SHORT for text in texts):
        count = _tokenizer().count
        return [count(text) for text in texts]
    counts: list[int] = toktok.batch_count(texts, ENCODING, _THREADS)
    return counts


@dataclass(frozen=True, slots=True)
class Truncation:
    """The result of cutting a text to a token budget."""

    text: str
    original_tokens: int
    kept_tokens: int

    @property
    def truncated(self) -> bool:
        """Whether anything was cut."""
        return self.kept_tokens < self.original_tokens


def truncate_tokens(text: str, max_tokens: int) -> Truncation:
    """Cut ``text`` to at most ``max_tokens`` o200k_base tokens.

    The cut lands on a character boundary, never inside a multi-byte character.
    Raises ValueError for a negative budget.
    """
    if max_tokens < 0:
        raise ValueError("max_tokens must not be negative")
    kept, total = toktok.truncate(text, max_tokens, ENCODING)
    kept_tokens = total if kept is text else count_tokens(kept)
    return Truncation(text=kept, original_tokens=total, kept_tokens=kept_tokens)
