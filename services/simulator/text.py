"""Deterministic answers and exact token accounting.

An answer depends only on the model, the instructions and the input messages:
the same request always gets the same text, a different one a different text.
The ``max_output_tokens`` cap is deliberately *not* part of the seed, so a
capped answer is a token-exact prefix of the uncapped one, as with a real model
that runs out of budget.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.tokens import count_tokens, count_tokens_batch, truncate_tokens

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens added per input message (instructions count as one message).

They stand for the chat-format framing a real model sees around each message
(``<|im_start|>role`` … ``<|im_end|>``): four tokens, the value OpenAI's own
token-counting cookbook uses for the gpt-4o family, rounded to a whole message.
"""

MIN_NATURAL_TOKENS = 8
"""Shortest natural answer, in tokens (unless the configured maximum is lower)."""

_OPENER_WORDS = 5

# A fixed vocabulary: changing it changes every simulated answer, so treat it as
# part of the simulator's contract with recorded test expectations.
_WORDS: tuple[str, ...] = (
    "gateway", "token", "stream", "cache", "budget", "route", "signal", "vector",
    "latency", "request", "answer", "model", "window", "context", "quota", "ledger",
    "breaker", "policy", "shard", "replica", "queue", "batch", "delta", "prompt",
    "metric", "trace", "header", "payload", "channel", "tenant", "limit", "window",
    "simple", "quick", "steady", "careful", "bright", "quiet", "narrow", "broad",
    "measures", "returns", "follows", "balances", "records", "checks", "routes",
    "carries", "holds", "keeps", "finds", "shows", "the", "a", "every", "each",
    "with", "from", "into", "over", "under", "before", "after", "because",
)  # fmt: skip

_WORD_RE = re.compile(r"[A-Za-z0-9']+")
_DELTA_RE = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, slots=True)
class Message:
    """One input message, reduced to what the simulator reads."""

    role: str
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer with its exact o200k_base token count."""

    text: str
    output_tokens: int
    truncated: bool
    """Whether ``max_output_tokens`` cut the natural answer short."""


def request_seed(model: str, messages: Sequence[Message]) -> bytes:
    """Return the sha256 digest that seeds the answer to a request.

    Instructions are passed as a leading ``system``/``developer`` message.
    """
    canonical = json.dumps(
        {"model": model, "messages": [[m.role, m.text] for m in messages]},
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def count_input_tokens(messages: Sequence[Message]) -> int:
    """Return the input tokens billed for ``messages``.

    That is each message's exact o200k_base count plus
    :data:`MESSAGE_OVERHEAD_TOKENS` per message.
    """
    if not messages:
        return 0
    counts = count_tokens_batch([m.text for m in messages])
    return sum(counts) + MESSAGE_OVERHEAD_TOKENS * len(messages)


def natural_length(seed: bytes, max_natural_tokens: int) -> int:
    """Return the natural answer length in tokens for ``seed``.

    It lies in ``[min(MIN_NATURAL_TOKENS, max_natural_tokens), max_natural_tokens]``.
    """
    low = min(MIN_NATURAL_TOKENS, max_natural_tokens)
    span = max_natural_tokens - low + 1
    return low + int.from_bytes(seed[:8], "big") % span


def generate_answer(
    seed: bytes,
    messages: Sequence[Message],
    *,
    max_natural_tokens: int,
    max_output_tokens: int | None = None,
) -> Answer:
    """Return the deterministic answer for a request.

    Args:
        seed: the request digest from :func:`request_seed`.
        messages: the input messages; a few words of the last user message open
            the answer, so that it visibly refers to the request.
        max_natural_tokens: upper bound of the natural answer length.
        max_output_tokens: the request's cap; a longer natural answer is cut at
            exactly this many tokens and marked truncated.
    """
    target = natural_length(seed, max_natural_tokens)
    text = _natural_text(seed, messages, target)
    if max_output_tokens is not None:
        cut = truncate_tokens(text, max_output_tokens)
        if cut.truncated:
            return Answer(text=cut.text, output_tokens=cut.kept_tokens, truncated=True)
    return Answer(text=text, output_tokens=count_tokens(text), truncated=False)


def split_deltas(text: str) -> list[str]:
    """Split ``text`` into stream deltas: one word with its leading space each.

    The deltas concatenate back to ``text`` exactly.
    """
    return _DELTA_RE.findall(text)


def _opener(messages: Sequence[Message]) -> str:
    user_texts = [m.text for m in messages if m.role == "user"]
    source = user_texts[-1] if user_texts else (messages[-1].text if messages else "")
    words = _WORD_RE.findall(source)[:_OPENER_WORDS]
    if not words:
        return "Simulated answer:"
    return f'Simulated answer to "{" ".join(words)}":'


def _natural_text(seed: bytes, messages: Sequence[Message], target: int) -> str:
    rng = random.Random(int.from_bytes(seed, "big"))
    pieces = [_opener(messages)]
    # Every piece is at least one token, so ``target`` words are always enough;
    # the text is then cut back to ``target`` tokens on a word boundary.
    sentence_left = 0
    for _ in range(target):
        word = rng.choice(_WORDS)
        if sentence_left == 0:
            sentence_left = rng.randint(5, 12)
            word = word.capitalize()
        sentence_left -= 1
        pieces.append(f"{word}." if sentence_left == 0 else word)
    full = " ".join(pieces)
    cut = truncate_tokens(full, target)
    text = cut.text
    if cut.truncated and not full[len(text)].isspace() and " " in text:
        text = text[: text.rindex(" ")]
    text = text.rstrip()
    # End on a full stop when it still fits, so uncapped answers read finished.
    while not text.endswith(".") and " " in text:
        if count_tokens(text + ".") <= target:
            return text + "."
        text = text[: text.rindex(" ")].rstrip(".")
    return text
