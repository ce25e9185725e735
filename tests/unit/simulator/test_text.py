from __future__ import annotations

import pytest

from services.core.tokens import count_tokens
from services.simulator.text import (
    MIN_NATURAL_TOKENS,
    PRIMING_TOKENS,
    Message,
    count_input_tokens,
    generate_answer,
    natural_length,
    request_seed,
    split_deltas,
)

QUESTION = [Message("developer", "Be brief."), Message("user", "What is a gateway?")]


def _answer(
    messages: list[Message],
    *,
    model: str = "gpt-4.1",
    natural: int = 64,
    cap: int | None = None,
) -> tuple[str, int, bool]:
    answer = generate_answer(
        request_seed(model, messages),
        messages,
        max_natural_tokens=natural,
        max_output_tokens=cap,
    )
    return answer.text, answer.output_tokens, answer.truncated


def test_same_request_gives_the_same_answer() -> None:
    assert _answer(QUESTION) == _answer(list(QUESTION))


@pytest.mark.parametrize(
    "other",
    [
        [Message("developer", "Be brief."), Message("user", "What is a gateway!")],
        [Message("developer", "Be long."), Message("user", "What is a gateway?")],
        [Message("user", "What is a gateway?")],
        [Message("system", "Be brief."), Message("user", "What is a gateway?")],
    ],
)
def test_different_requests_give_different_answers(other: list[Message]) -> None:
    assert _answer(other)[0] != _answer(QUESTION)[0]


def test_model_is_part_of_the_seed() -> None:
    assert request_seed("gpt-4.1", QUESTION) != request_seed("gpt-4.1-mini", QUESTION)
    assert _answer(QUESTION, model="gpt-4.1-nano")[0] != _answer(QUESTION)[0]


def test_answer_opens_with_words_of_the_last_user_message() -> None:
    text, _, _ = _answer(QUESTION)
    assert text.startswith('Simulated answer to "What is a gateway":')


def test_answer_without_words_still_has_an_opener() -> None:
    text, _, _ = _answer([Message("user", "?!")])
    assert text.startswith("Simulated answer:")


@pytest.mark.parametrize("prompt", [f"question number {i}" for i in range(40)])
def test_natural_answer_length_and_count_are_exact(prompt: str) -> None:
    messages = [Message("user", prompt)]
    text, tokens, truncated = _answer(messages, natural=64)
    assert not truncated
    assert tokens == count_tokens(text)
    assert tokens <= natural_length(request_seed("gpt-4.1", messages), 64) <= 64
    assert text.endswith(".")


def test_natural_lengths_spread_over_the_range() -> None:
    lengths = {
        natural_length(request_seed("gpt-4.1", [Message("user", str(i))]), 64)
        for i in range(200)
    }
    assert min(lengths) >= MIN_NATURAL_TOKENS
    assert max(lengths) <= 64
    assert len(lengths) > 30


def test_natural_length_with_a_tiny_maximum() -> None:
    assert natural_length(b"\xff" * 32, 3) <= 3
    text, tokens, truncated = _answer(QUESTION, natural=3)
    assert tokens <= 3
    assert tokens == count_tokens(text)
    assert not truncated


@pytest.mark.parametrize("cap", [1, 2, 5, 10, 20])
def test_cap_cuts_a_prefix_at_exactly_the_cap(cap: int) -> None:
    full, full_tokens, _ = _answer(QUESTION)
    assert full_tokens > 20
    text, tokens, truncated = _answer(QUESTION, cap=cap)
    assert truncated
    assert full.startswith(text)
    assert tokens == cap == count_tokens(text)


def test_cap_above_the_natural_length_changes_nothing() -> None:
    full, full_tokens, _ = _answer(QUESTION)
    assert _answer(QUESTION, cap=full_tokens) == (full, full_tokens, False)
    assert _answer(QUESTION, cap=10_000) == (full, full_tokens, False)


def test_deltas_concatenate_to_the_text() -> None:
    text, _, _ = _answer(QUESTION)
    deltas = split_deltas(text)
    assert "".join(deltas) == text
    assert len(deltas) > 5
    assert all(d.strip() for d in deltas)


def test_deltas_keep_odd_whitespace() -> None:
    text = "  a\n\nb  c \t"
    assert "".join(split_deltas(text)) == text
    assert split_deltas("") == []


def test_input_tokens_prime_the_reply_and_frame_each_message() -> None:
    expected = (
        PRIMING_TOKENS
        + 3
        + count_tokens("developer")
        + count_tokens("Be brief.")
        + 3
        + count_tokens("user")
        + count_tokens("What is a gateway?")
    )
    assert count_input_tokens(QUESTION) == expected
    assert count_input_tokens([]) == PRIMING_TOKENS
    assert count_input_tokens([Message("user", "")]) == (
        PRIMING_TOKENS + 3 + count_tokens("user")
    )
