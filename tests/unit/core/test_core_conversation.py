"""The request model: validation paths and rules, canonical JSON, the storage form
and the cache context."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.conversation import (
    MAX_MESSAGES,
    MAX_PROMPT_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOOLS,
    FormatKind,
    ImageDetail,
    ImagePart,
    Message,
    Prompt,
    ReasoningEffort,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    cache_context,
    canonical_json,
    prompt_from_json,
    prompt_to_json,
    validate_prompt,
)

PNG = "data:image/png;base64,iVBORw0KGgo="
CALL_A = ToolCall("call_a", "get_weather", '{"city": "Oslo", "unit": "celsius"}')
CALL_B = ToolCall("call_b", "get_time", '{"zone": "Europe/Oslo"}')
TOOLS = (
    Tool("get_weather", "Weather by city.", {"type": "object"}),
    Tool("get_time", "Local time.", {"type": "object"}),
)


def _user(*content: str | ImagePart) -> Message:
    return Message(Role.USER, content)


def _assistant(text: str = "", *calls: ToolCall) -> Message:
    return Message(Role.ASSISTANT, (text,) if text else (), calls)


def _tool(call_id: str, output: str = "ok") -> Message:
    return Message(Role.TOOL, (output,), tool_call_id=call_id)


AGENT = Prompt(
    instructions="Use the tools.",
    messages=(
        _user("Weather and time in Oslo?"),
        _assistant("", CALL_A, CALL_B),
        _tool("call_a", '{"temp": 3}'),
        _tool("call_b", '"14:05"'),
        _user("Should I take a coat?"),
    ),
    tools=TOOLS,
)


def _paths(prompt: Prompt, **options: Any) -> list[str]:
    return [violation.field for violation in validate_prompt(prompt, **options)]


def test_a_valid_agent_conversation_has_no_violations() -> None:
    assert validate_prompt(AGENT) == []


@pytest.mark.parametrize(
    ("prompt", "paths"),
    [
        pytest.param(
            Prompt(
                messages=(
                    _user("hi"),
                    _assistant("", CALL_A),
                    _tool("call_a"),
                    _tool("call_zzz"),
                ),
                tools=TOOLS,
            ),
            ["messages[3].tool_call_id"],
            id="tool message answering no earlier call",
        ),
        pytest.param(
            Prompt(
                messages=(
                    _user("hi"),
                    _assistant("", CALL_A),
                    _tool("call_a"),
                    _tool("call_a"),
                ),
                tools=TOOLS,
            ),
            ["messages[3].tool_call_id"],
            id="a call answered twice",
        ),
        pytest.param(
            Prompt(messages=(Message(Role.USER, ("hi",), (CALL_A,)),), tools=TOOLS),
            ["messages[0].tool_calls"],
            id="tool calls on a user turn",
        ),
        pytest.param(
            Prompt(
                messages=(_user("hi"), Message(Role.ASSISTANT, ("a", ImagePart(PNG))))
            ),
            ["messages[1].content[1].image"],
            id="image on an assistant turn",
        ),
        pytest.param(
            Prompt(messages=(_user("look", ImagePart("http://example.com/a.png")),)),
            ["messages[0].content[1].image.url"],
            id="image url neither https nor data",
        ),
        pytest.param(
            Prompt(messages=(_user("hi"),), tools=(Tool("get weather"),)),
            ["tools[0].name"],
            id="tool name with a space",
        ),
        pytest.param(
            Prompt(messages=(_user("hi"),), tools=(Tool("x" * 65),)),
            ["tools[0].name"],
            id="tool name of 65 characters",
        ),
        pytest.param(
            Prompt(messages=(_user("hi"),), tools=(Tool("a"), Tool("b"), Tool("a"))),
            ["tools[2].name"],
            id="duplicate tool names",
        ),
        pytest.param(
            Prompt(
                messages=(_user("hi"),),
                tools=tuple(Tool(f"t{i}") for i in range(MAX_TOOLS + 1)),
            ),
            ["tools"],
            id="129 tools",
        ),
        pytest.param(
            Prompt(
                messages=(_user("hi"),),
                tools=TOOLS,
                tool_choice=ToolChoice(function="get_stock"),
            ),
            ["tool_choice.function"],
            id="tool_choice naming no tool",
        ),
        pytest.param(
            Prompt(messages=(_user("hi"),), parallel_tool_calls=False),
            ["parallel_tool_calls"],
            id="parallel_tool_calls without tools",
        ),
        pytest.param(
            Prompt(
                messages=(_user("hi"),),
                response_format=ResponseFormat(FormatKind.JSON_SCHEMA, "answer", {}),
            ),
            ["response_format.json_schema.schema"],
            id="empty schema",
        ),
        pytest.param(
            Prompt(messages=(_user("hi"), _assistant("yes"), _user("  \n\t "))),
            ["messages[2].content"],
            id="blank user message",
        ),
        pytest.param(
            Prompt(messages=tuple(_user("hi") for _ in range(MAX_MESSAGES + 1))),
            ["messages"],
            id="too many messages",
        ),
    ],
)
def test_each_problem_is_reported_at_its_field(
    prompt: Prompt, paths: list[str]
) -> None:
    assert _paths(prompt) == paths


def test_the_whole_prompt_has_a_byte_cap_beyond_the_per_text_cap() -> None:
    # Nine texts of 1 MiB each: every one is within the per-text cap, together
    # they pass the 8 MiB cap of the whole request.
    text = "a" * MAX_TEXT_BYTES
    parts = MAX_PROMPT_BYTES // MAX_TEXT_BYTES + 1
    prompt = Prompt(messages=(_user(*(text for _ in range(parts))),))

    violations = validate_prompt(prompt)

    assert [v.field for v in violations] == ["messages"]
    assert str(MAX_PROMPT_BYTES) in violations[0].description


def test_exactly_the_byte_cap_is_allowed() -> None:
    text = "a" * MAX_TEXT_BYTES
    parts = MAX_PROMPT_BYTES // MAX_TEXT_BYTES
    assert (
        validate_prompt(Prompt(messages=(_user(*(text for _ in range(parts))),))) == []
    )


def test_the_input_shorthand_reports_its_problems_at_input() -> None:
    prompt = Prompt.of_text("  ")

    assert _paths(prompt) == ["messages[0].content"]
    assert _paths(prompt, input_shorthand=True) == ["input"]
    assert _paths(prompt, prefix="items[2].", input_shorthand=True) == [
        "items[2].input"
    ]


# -- canonical JSON

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=6),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
    ),
    max_leaves=15,
)


def _reordered(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order and every
    integer as a float, as protobuf's Struct would carry it."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _reordered(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_reordered(item, rng) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUE, seed=st.integers(0, 2**32))
def test_key_order_and_integral_floats_never_change_canonical_json(
    value: Any, seed: int
) -> None:
    reordered = _reordered(value, random.Random(seed))

    assert canonical_json(reordered) == canonical_json(value)
    assert json.loads(canonical_json(value)) == value


def test_canonical_json_is_compact_sorted_and_keeps_non_integral_floats() -> None:
    assert canonical_json({"b": 1.0, "a": [2.5, True, None], "é": "ü"}) == (
        '{"a":[2.5,true,null],"b":1,"é":"ü"}'
    )


# -- storage form

NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
TEXTS = st.text(max_size=20)
SCHEMAS = st.dictionaries(
    st.text(min_size=1, max_size=5), JSON_LEAF, min_size=1, max_size=4
)
IMAGES = st.builds(
    ImagePart,
    url=st.sampled_from([PNG, "https://example.com/a.png"]),
    detail=st.sampled_from(ImageDetail),
    width=st.integers(0, 4096),
    height=st.integers(0, 4096),
)
CALLS = st.builds(ToolCall, id=NAMES, name=NAMES, arguments=TEXTS)
MESSAGES = st.builds(
    Message,
    role=st.sampled_from(Role),
    content=st.lists(st.one_of(TEXTS, IMAGES), max_size=3).map(tuple),
    tool_calls=st.lists(CALLS, max_size=2).map(tuple),
    tool_call_id=st.one_of(st.just(""), NAMES),
)
PROMPTS = st.builds(
    Prompt,
    instructions=TEXTS,
    messages=st.lists(MESSAGES, max_size=4).map(tuple),
    tools=st.lists(
        st.builds(
            Tool,
            name=NAMES,
            description=TEXTS,
            parameters=st.one_of(st.none(), SCHEMAS),
            strict=st.booleans(),
        ),
        max_size=3,
    ).map(tuple),
    tool_choice=st.one_of(
        st.none(),
        st.builds(ToolChoice, mode=st.sampled_from(ToolChoiceMode)),
        st.builds(ToolChoice, function=NAMES),
    ),
    parallel_tool_calls=st.one_of(st.none(), st.booleans()),
    response_format=st.one_of(
        st.none(),
        st.builds(
            ResponseFormat,
            kind=st.sampled_from(FormatKind),
            name=NAMES,
            schema=st.one_of(st.none(), SCHEMAS),
            strict=st.booleans(),
            description=TEXTS,
        ),
    ),
    reasoning_effort=st.one_of(st.none(), st.sampled_from(ReasoningEffort)),
)


@settings(max_examples=200, deadline=None)
@given(prompt=PROMPTS)
def test_a_prompt_survives_its_json_storage_form(prompt: Prompt) -> None:
    stored = json.loads(json.dumps(prompt_to_json(prompt)))

    assert prompt_from_json(stored) == prompt


# -- cache context

PLAIN = Prompt(
    messages=(
        _user("What is a token bucket?"),
        _assistant("A bucket that refills at a fixed rate."),
        _user("And when it is empty?"),
    )
)


def _replace_message(prompt: Prompt, index: int, message: Message) -> Prompt:
    messages = list(prompt.messages)
    messages[index] = message
    return dataclasses.replace(prompt, messages=tuple(messages))


def test_the_semantic_text_is_the_last_user_text() -> None:
    context = cache_context(PLAIN)

    assert context.text == "And when it is empty?"
    assert context.multi_turn
    assert context.exact_only_reason == ""


def test_a_lone_text_message_has_no_context_digest() -> None:
    context = cache_context(Prompt.of_text("hi", "Be brief."))

    assert (context.context_digest, context.multi_turn) == ("", False)
    assert (context.tools_json, context.response_format_json) == ("", "")


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(
            _replace_message(PLAIN, 0, _user("What is a leaky bucket?")),
            id="an earlier user turn",
        ),
        pytest.param(
            _replace_message(PLAIN, 1, _assistant("A bucket of tokens.")),
            id="an earlier assistant turn",
        ),
        pytest.param(
            dataclasses.replace(PLAIN, reasoning_effort=ReasoningEffort.LOW),
            id="a reasoning effort",
        ),
        pytest.param(
            _replace_message(PLAIN, 2, _user("And when it is empty?", ImagePart(PNG))),
            id="an image on the last turn",
        ),
    ],
)
def test_the_context_digest_changes_with_every_other_part(changed: Prompt) -> None:
    assert cache_context(changed).context_digest != cache_context(PLAIN).context_digest


def test_reasoning_efforts_differ_from_each_other() -> None:
    low = dataclasses.replace(PLAIN, reasoning_effort=ReasoningEffort.LOW)
    high = dataclasses.replace(PLAIN, reasoning_effort=ReasoningEffort.HIGH)

    assert cache_context(low).context_digest != cache_context(high).context_digest


def test_an_image_of_another_url_or_detail_changes_the_digest() -> None:
    def with_image(image: ImagePart) -> str:
        return cache_context(
            Prompt(messages=(_user("What is it?", image),))
        ).context_digest

    digests = {
        with_image(ImagePart(PNG)),
        with_image(ImagePart("https://example.com/b.png")),
        with_image(ImagePart(PNG, ImageDetail.LOW)),
    }
    assert len(digests) == 3


def test_tool_call_arguments_count_but_not_their_key_order() -> None:
    reordered = dataclasses.replace(
        CALL_A, arguments='{ "unit": "celsius",  "city": "Oslo" }'
    )
    other = dataclasses.replace(
        CALL_A, arguments='{"city": "Bergen", "unit": "celsius"}'
    )

    def digest(call: ToolCall) -> str:
        return cache_context(
            _replace_message(AGENT, 1, _assistant("", call, CALL_B))
        ).context_digest

    assert digest(reordered) == digest(CALL_A)
    assert digest(other) != digest(CALL_A)


def test_a_tool_result_changes_the_digest() -> None:
    changed = _replace_message(AGENT, 2, _tool("call_a", '{"temp": 4}'))

    assert cache_context(changed).context_digest != cache_context(AGENT).context_digest


def test_images_make_a_request_exact_only() -> None:
    prompt = Prompt(messages=(_user("What is it?", ImagePart(PNG)),))

    assert cache_context(prompt).exact_only_reason == "images"


def test_turns_after_the_last_user_message_make_it_exact_only() -> None:
    awaiting = Prompt(messages=AGENT.messages[:4], tools=TOOLS)
    context = cache_context(awaiting)

    assert context.exact_only_reason == "tool_result"
    assert context.text == "Weather and time in Oslo?"


def test_tools_json_ignores_the_schemas_key_order() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
    reordered = {
        "required": [],
        "properties": {"a": {"type": "string"}},
        "type": "object",
    }

    def tools_json(parameters: dict[str, Any]) -> str:
        prompt = dataclasses.replace(
            PLAIN, tools=(Tool("lookup", "Look it up.", parameters),)
        )
        return cache_context(prompt).tools_json

    assert tools_json(reordered) == tools_json(schema)
    assert tools_json({**schema, "required": ["a"]}) != tools_json(schema)
