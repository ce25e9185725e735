"""The simulated model's choices: which tools it calls, what it says after."""

from __future__ import annotations

import json

from services.core.tokens import count_tokens
from services.simulator.reply import (
    argument_fragments,
    compose_answer,
    mentioned_tools,
    plan_tool_calls,
    tool_result_opener,
)
from services.simulator.text import Message, OutputFormat, Prompt, Tool, ToolCall

WEATHER = Tool(
    "get_weather",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
TIME = Tool("get_time")
TOOLS = (WEATHER, TIME)
SEED = b"seed"


def _prompt(text: str, **options: object) -> Prompt:
    return Prompt(messages=(Message("user", text),), tools=TOOLS, **options)  # type: ignore[arg-type]


def test_mentions_are_whole_words_in_text_order() -> None:
    names = [t.name for t in mentioned_tools("Get Time, then GET_WEATHER.", TOOLS)]
    assert names == ["get_time", "get_weather"]
    assert mentioned_tools("forget_weathering", TOOLS) == []
    assert mentioned_tools("", TOOLS) == []


def test_calls_follow_the_choice() -> None:
    def names(prompt: Prompt) -> list[str]:
        return [c.name for c in plan_tool_calls(SEED, prompt)]

    assert names(_prompt("no tool here")) == []
    assert names(_prompt("no tool here", tool_choice="required")) == ["get_weather"]
    assert names(_prompt("get time", tool_choice="none")) == []
    assert names(_prompt("get time and get weather")) == ["get_time", "get_weather"]
    assert names(_prompt("get time and get weather", parallel_tool_calls=False)) == [
        "get_time"
    ]
    forced = _prompt("get time", tool_choice="function", forced_tool="get_weather")
    assert names(forced) == ["get_weather"]


def test_calls_are_deterministic_with_valid_arguments() -> None:
    calls = plan_tool_calls(SEED, _prompt("get weather"))
    assert calls == plan_tool_calls(SEED, _prompt("get weather"))
    (call,) = calls
    assert call.call_id.startswith("call_") and len(call.call_id) == 29
    assert isinstance(json.loads(call.arguments)["city"], str)
    (bare,) = plan_tool_calls(SEED, _prompt("get time"))
    assert bare.arguments == "{}"


def test_no_call_after_a_tool_result() -> None:
    messages = (
        Message("user", "get weather"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", "{}"),)),
        Message("tool", "  sunny\n and warm ", call_id="call_1"),
    )
    prompt = Prompt(messages=messages, tools=TOOLS, tool_choice="required")
    assert plan_tool_calls(SEED, prompt) == ()
    assert (
        tool_result_opener(messages)
        == 'The get_weather tool returned "sunny and warm".'
    )
    answer = compose_answer(SEED, prompt, max_natural_tokens=30)
    assert answer.text.startswith('The get_weather tool returned "sunny and warm".')
    assert answer.output_tokens == count_tokens(answer.text)
    assert tool_result_opener(messages[:1]) is None


def test_long_tool_output_is_quoted_in_part() -> None:
    messages = (Message("tool", "word " * 500, call_id="x"),)
    opener = tool_result_opener(messages)
    assert opener is not None and opener.startswith('The function tool returned "word')
    assert len(opener) < 300 and "…" in opener


def test_argument_fragments_rebuild_the_arguments() -> None:
    arguments = '{"city":"Paris, France","days":3,"tags":["a:b"]}'
    fragments = argument_fragments(arguments)
    assert len(fragments) > 3
    assert "".join(fragments) == arguments
    assert argument_fragments("{}") == ["{}"]


def test_reasoning_spends_the_cap_first() -> None:
    prompt = Prompt(messages=(Message("user", "hi"),), reasoning_effort="medium")
    full = compose_answer(SEED, prompt, max_natural_tokens=40)
    assert full.reasoning_tokens == 192
    assert full.output_tokens == count_tokens(full.text) + 192
    starved = compose_answer(SEED, prompt, max_natural_tokens=40, max_output_tokens=100)
    assert (starved.text, starved.output_tokens, starved.truncated) == ("", 100, True)
    some = compose_answer(SEED, prompt, max_natural_tokens=40, max_output_tokens=195)
    assert some.output_tokens == 195 and some.truncated
    assert full.text.startswith(some.text)


def test_json_object_answer() -> None:
    prompt = Prompt(
        messages=(Message("user", "json please"),),
        output_format=OutputFormat("json_object"),
    )
    answer = compose_answer(SEED, prompt, max_natural_tokens=20)
    assert set(json.loads(answer.text)) == {"answer"}
