"""Cutting a conversation to its budget: oldest turns first and whole, a tool call
never apart from its results, the last user text only as a last resort."""

from __future__ import annotations

from services.core.conversation import (
    Message,
    Prompt,
    Role,
    Tool,
    ToolCall,
    validate_prompt,
)
from services.core.prompt_tokens import (
    FittedPrompt,
    PromptTokens,
    count_prompt,
    fit_conversation,
)
from services.core.tokens import count_tokens

CALL_A = ToolCall("call_a", "get_weather", '{"city": "Oslo"}')
CALL_B = ToolCall("call_b", "get_time", '{"zone": "Europe/Oslo"}')
LONG_QUESTION = " ".join(f"word{i}" for i in range(200))


def _user(text: str) -> Message:
    return Message(Role.USER, (text,))


def _assistant(text: str) -> Message:
    return Message(Role.ASSISTANT, (text,))


def _fit(prompt: Prompt, cap: int) -> tuple[FittedPrompt, PromptTokens]:
    tokens = count_prompt(prompt)
    return fit_conversation(prompt, tokens, cap), tokens


CHAT = Prompt(
    instructions="Be brief.",
    messages=(
        Message(Role.SYSTEM, ("You are a tutor.",)),
        _user("First question about buckets and tokens."),
        _assistant("First answer about buckets and tokens."),
        Message(Role.DEVELOPER, ("Answer in English.",)),
        _user("Second question about refill rates."),
        _assistant("Second answer about refill rates."),
        _user("Last question?"),
    ),
)

AGENT = Prompt(
    messages=(
        _user("Weather and time in Oslo, please, and be thorough about it."),
        Message(Role.ASSISTANT, tool_calls=(CALL_A, CALL_B)),
        Message(Role.TOOL, ('{"temp": 3, "sky": "overcast"}',), tool_call_id="call_a"),
        Message(Role.TOOL, ('"14:05"',), tool_call_id="call_b"),
        _assistant("It is 3 degrees and overcast; the time is 14:05."),
        _user("Should I take a coat?"),
    ),
    tools=(Tool("get_weather"), Tool("get_time")),
)


def test_the_oldest_turns_go_first_and_system_and_developer_messages_stay() -> None:
    tokens = count_prompt(CHAT)
    # Room for everything but the first user turn and its answer.
    cap = tokens.conversation - tokens.messages[1] - tokens.messages[2]

    fitted = fit_conversation(CHAT, tokens, cap)

    assert fitted.prompt.messages == (
        CHAT.messages[0],
        CHAT.messages[3],
        *CHAT.messages[4:],
    )
    assert fitted.dropped_messages == 2
    assert fitted.tokens.conversation <= cap
    assert fitted.prompt.instructions == CHAT.instructions


def test_one_token_over_drops_exactly_the_oldest_turn() -> None:
    tokens = count_prompt(CHAT)

    fitted = fit_conversation(CHAT, tokens, tokens.conversation - 1)

    assert fitted.prompt.messages == (CHAT.messages[0], *CHAT.messages[2:])
    assert fitted.dropped_messages == 1


def test_a_tool_call_never_loses_its_results() -> None:
    tokens = count_prompt(AGENT)
    # Dropping the first user turn and the assistant's calls would be enough, so
    # the cap falls inside the group of the calls and their two results.
    cap = tokens.conversation - tokens.messages[0] - tokens.messages[1]
    assert tokens.conversation - tokens.messages[0] > cap

    fitted = fit_conversation(AGENT, tokens, cap)

    assert fitted.prompt.messages == AGENT.messages[4:]
    assert fitted.dropped_messages == 4
    assert fitted.prompt.last_user_text == "Should I take a coat?"


def test_results_after_a_later_user_turn_still_keep_their_call() -> None:
    # Validation allows a user turn between a call and its result; when the result
    # follows the last user message, the call before it must stay too: only the
    # first user turn may go, then the last text is cut.
    prompt = Prompt(
        messages=(
            _user("Earlier question."),
            Message(Role.ASSISTANT, tool_calls=(CALL_A,)),
            _user(LONG_QUESTION),
            Message(Role.TOOL, ('{"temp": 3}',), tool_call_id="call_a"),
        ),
        tools=(Tool("get_weather"),),
    )
    assert validate_prompt(prompt) == []
    tokens = count_prompt(prompt)

    fitted = fit_conversation(prompt, tokens, tokens.conversation - 20)

    assert [m.role for m in fitted.prompt.messages] == [
        Role.ASSISTANT,
        Role.USER,
        Role.TOOL,
    ]
    assert validate_prompt(fitted.prompt) == []


def test_a_reused_call_id_groups_each_call_with_its_own_result() -> None:
    # "call_a" is answered, then used again by a later turn: dropping the first
    # exchange must not take the second one's result with it.
    prompt = Prompt(
        messages=(
            _user("Weather in Oslo, please, and be thorough about it."),
            Message(Role.ASSISTANT, tool_calls=(CALL_A,)),
            Message(Role.TOOL, ('{"temp": 3}',), tool_call_id="call_a"),
            Message(Role.ASSISTANT, tool_calls=(CALL_A,)),
            Message(Role.TOOL, ('{"temp": 4}',), tool_call_id="call_a"),
            _user("Coat?"),
        ),
        tools=(Tool("get_weather"),),
    )
    assert validate_prompt(prompt) == []
    tokens = count_prompt(prompt)
    cap = tokens.conversation - sum(tokens.messages[:3])

    fitted = fit_conversation(prompt, tokens, cap)

    assert fitted.prompt.messages == prompt.messages[3:]
    assert validate_prompt(fitted.prompt) == []


def test_dropped_tokens_are_the_difference_of_the_totals() -> None:
    fitted, before = _fit(CHAT, count_prompt(CHAT).conversation - 1)

    assert fitted.dropped_tokens == before.total - fitted.tokens.total
    assert fitted.dropped_tokens == before.messages[1]
    assert fitted.tokens == count_prompt(fitted.prompt)


def test_the_last_user_text_is_cut_only_when_dropping_turns_is_not_enough() -> None:
    prompt = Prompt(
        messages=(
            Message(Role.SYSTEM, ("You are a tutor.",)),
            _user("Earlier question."),
            _assistant("Earlier answer."),
            _user(LONG_QUESTION),
        )
    )
    tokens = count_prompt(prompt)
    # Dropping the two earlier turns leaves the system message and the question,
    # 60 tokens too many.
    cap = tokens.messages[0] + tokens.messages[3] - 60

    fitted = fit_conversation(prompt, tokens, cap)

    assert fitted.dropped_messages == 2
    assert fitted.prompt.messages[0] == prompt.messages[0]
    kept = fitted.prompt.last_user_text
    assert LONG_QUESTION.startswith(kept)
    assert count_tokens(kept) == count_tokens(LONG_QUESTION) - 60
    assert fitted.tokens.conversation <= cap
    assert fitted.dropped_tokens == tokens.total - fitted.tokens.total


def test_the_last_user_text_is_untouched_when_dropping_is_enough() -> None:
    prompt = Prompt(
        messages=(
            _user("Earlier question."),
            _assistant("Earlier."),
            _user(LONG_QUESTION),
        )
    )
    tokens = count_prompt(prompt)

    fitted = fit_conversation(prompt, tokens, tokens.messages[2])

    assert fitted.prompt.messages == (prompt.messages[2],)


def test_a_cap_of_zero_or_above_the_conversation_changes_nothing() -> None:
    tokens = count_prompt(AGENT)

    for cap in (0, tokens.conversation):
        fitted = fit_conversation(AGENT, tokens, cap)
        assert fitted.prompt is AGENT
        assert fitted.tokens is tokens
        assert (fitted.dropped_tokens, fitted.dropped_messages) == (0, 0)
