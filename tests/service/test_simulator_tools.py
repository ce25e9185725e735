"""Conversations, tools, structured outputs, images and reasoning, through the SDK."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import openai
import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel

from services.core.tokens import count_tokens
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultKind
from tests.images import png_data_url

VOCABULARY = Path(__file__).parents[1] / "data" / "o200k_base.tiktoken.gz"

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the weather forecast for a city.",
        "parameters": WEATHER_SCHEMA,
        "strict": True,
    },
    {
        "type": "function",
        "name": "get_time",
        "description": "Get the local time in a timezone.",
        "parameters": TIME_SCHEMA,
        "strict": True,
    },
]
CHAT_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {k: v for k, v in tool.items() if k != "type"},
    }
    for tool in TOOLS
]
ASK_WEATHER = "What is the weather in Paris? Please use get weather."
TOOL_OUTPUT = '{"temperature_c": 21, "sky": "clear"}'

ARTICLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "status": {"type": "string", "enum": ["draft", "published"]},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "author": {"$ref": "#/$defs/person"},
        "sections": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "heading": {"type": "string"},
                    "words": {"type": "integer", "minimum": 0, "maximum": 5000},
                    "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                },
                "required": ["heading", "words", "tags"],
                "additionalProperties": False,
            },
        },
        "reviewed": {"type": ["string", "null"], "format": "date"},
    },
    "required": ["title", "status", "rating", "author", "sections", "reviewed"],
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["name", "email"],
            "additionalProperties": False,
        },
        "tag": {"type": "string", "enum": ["news", "howto", "opinion"]},
    },
}


def _validate(value: object, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator
    validator(schema, format_checker=validator.FORMAT_CHECKER).validate(value)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    settings = SimulatorSettings(port=0, latency_ms=0, hang_seconds=1.0)
    async with await start_simulator(settings) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-sim", max_retries=0
    ) as sdk:
        yield sdk


def _function_calls(calls: Sequence[object]) -> list[tuple[str, str, str]]:
    return [
        (c.id, c.function.name, c.function.arguments)
        for c in calls
        if isinstance(c, ChatCompletionMessageFunctionToolCall)
    ]


def _formula(
    messages: list[tuple[str, list[str], int, list[tuple[str, str]]]],
    *,
    tools: list[dict[str, Any]] = (),  # type: ignore[assignment]
    schema: tuple[str, dict[str, Any]] | None = None,
    count: Any = count_tokens,
) -> int:
    """The documented input-token formula; messages are (role, texts, image
    tokens, tool calls)."""

    def canonical(value: object) -> str:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    total = 3
    for role, texts, image_tokens, calls in messages:
        total += 3 + count(role) + sum(count(t) for t in texts) + image_tokens
        total += sum(3 + count(name) + count(args) for name, args in calls)
    if tools:
        total += 12
        for tool in tools:
            total += 7 + count(tool["name"]) + count(tool.get("description") or "")
            total += count(canonical(tool.get("parameters") or {}))
    if schema is not None:
        total += 8 + count(schema[0]) + count(canonical(schema[1]))
    return total


# --- Responses: tools ----------------------------------------------------------


async def test_responses_tool_call_has_valid_arguments(client: AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt-4.1", input=ASK_WEATHER, tools=TOOLS
    )
    assert response.status == "completed"
    assert len(response.output) == 1
    item = response.output[0]
    assert item.type == "function_call"
    assert item.name == "get_weather"
    assert item.status == "completed"
    assert item.id is not None and item.id.startswith("fc_")
    assert item.call_id.startswith("call_")
    int(item.call_id.removeprefix("call_"), 16)
    arguments = json.loads(item.arguments)
    _validate(arguments, WEATHER_SCHEMA)
    assert response.output_text == ""
    assert [tool.type for tool in response.tools] == ["function", "function"]
    assert response.tool_choice == "auto"
    usage = response.usage
    assert usage is not None
    assert (
        usage.output_tokens
        == count_tokens(item.name) + count_tokens(item.arguments) + 3
    )
    # Deterministic: the same request makes the same call.
    again = await client.responses.create(
        model="gpt-4.1", input=ASK_WEATHER, tools=TOOLS
    )
    assert again.output[0] == item.model_copy(update={"id": again.output[0].id})


async def test_two_turn_tool_loop(client: AsyncOpenAI) -> None:
    conversation: list[Any] = [{"role": "user", "content": ASK_WEATHER}]
    first = await client.responses.create(
        model="gpt-4.1", input=conversation, tools=TOOLS
    )
    call = first.output[0]
    assert call.type == "function_call"
    conversation += first.output
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_OUTPUT}
    )
    second = await client.responses.create(
        model="gpt-4.1", input=conversation, tools=TOOLS
    )
    assert second.status == "completed"
    assert [item.type for item in second.output] == ["message"]
    text = second.output_text
    assert text.startswith(f'The get_weather tool returned "{TOOL_OUTPUT}".')
    assert second.usage is not None
    assert second.usage.output_tokens == count_tokens(text)
    assert second.usage.input_tokens == _formula(
        [
            ("user", [ASK_WEATHER], 0, []),
            ("assistant", [""], 0, [(call.name, call.arguments)]),
            ("tool", [TOOL_OUTPUT], 0, []),
        ],
        tools=TOOLS,
    )


async def test_function_call_output_without_its_call_is_a_400(
    client: AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model="gpt-4.1",
            tools=TOOLS,
            input=[
                {"role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "call_x", "output": "1"},
            ],
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "input[1]"
    assert body["type"] == "invalid_request_error"
    assert "call_x" in body["message"]


async def test_tool_choice_and_parallel_calls(client: AsyncOpenAI) -> None:
    async def names(text: str, **options: Any) -> list[str]:
        response = await client.responses.create(
            model="gpt-4.1", input=text, tools=TOOLS, **options
        )
        return [item.name for item in response.output if item.type == "function_call"]

    both = "Call GET_TIME and then get_weather for Oslo."
    assert await names(both) == ["get_time", "get_weather"]
    assert await names(both, parallel_tool_calls=False) == ["get_time"]
    assert await names(both, tool_choice="none") == []
    assert await names("Tell me a story.") == []
    assert await names("Tell me a story.", tool_choice="required") == ["get_weather"]
    forced = {"type": "function", "name": "get_time"}
    assert await names("Weather in Oslo? get_weather", tool_choice=forced) == [
        "get_time"
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        await names("x", tool_choice={"type": "function", "name": "nope"})
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "tool_choice"


# --- Chat Completions: tools ---------------------------------------------------


async def test_chat_tool_call_then_tool_result(client: AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK_WEATHER}]
    first = await client.chat.completions.create(
        model="gpt-4.1", messages=messages, tools=CHAT_TOOLS
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.id.startswith("call_")
    _validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
    assert first.usage is not None
    assert first.usage.completion_tokens == (
        count_tokens("get_weather") + count_tokens(call.function.arguments) + 3
    )
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_OUTPUT})
    second = await client.chat.completions.create(
        model="gpt-4.1", messages=messages, tools=CHAT_TOOLS
    )
    assert second.choices[0].finish_reason == "stop"
    content = second.choices[0].message.content
    assert content is not None and TOOL_OUTPUT in content
    # The same conversation through the Responses API gets the same call.
    response = await client.responses.create(
        model="gpt-4.1", input=[{"role": "user", "content": ASK_WEATHER}], tools=TOOLS
    )
    assert response.output[0].type == "function_call"
    assert response.output[0].call_id == call.id


async def test_chat_tool_message_without_its_call_is_a_400(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4.1",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_x", "content": "1"},
            ],
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages[1]"


# --- Structured outputs -----------------------------------------------------------


async def test_responses_strict_json_schema(client: AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt-4.1",
        input="Describe an article.",
        text={
            "format": {
                "type": "json_schema",
                "name": "article",
                "schema": ARTICLE_SCHEMA,
                "strict": True,
            }
        },
    )
    value = json.loads(response.output_text)
    _validate(value, ARTICLE_SCHEMA)
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert response.usage is not None
    assert response.usage.output_tokens == count_tokens(response.output_text)
    assert response.usage.input_tokens == _formula(
        [("user", ["Describe an article."], 0, [])], schema=("article", ARTICLE_SCHEMA)
    )


async def test_chat_strict_json_schema(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": "Describe an article."}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "article",
                "schema": ARTICLE_SCHEMA,
                "strict": True,
            },
        },
    )
    content = completion.choices[0].message.content
    assert content is not None
    _validate(json.loads(content), ARTICLE_SCHEMA)


class Step(BaseModel):
    explanation: str
    output: int


class Solution(BaseModel):
    steps: list[Step]
    final_answer: str


async def test_sdk_parse_helpers_get_their_models(client: AsyncOpenAI) -> None:
    parsed = await client.responses.parse(
        model="gpt-4.1", input="Solve 8x + 7 = -23", text_format=Solution
    )
    assert isinstance(parsed.output_parsed, Solution)
    completion = await client.chat.completions.parse(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "Solve 8x + 7 = -23"}],
        response_format=Solution,
    )
    assert isinstance(completion.choices[0].message.parsed, Solution)


async def test_json_object(client: AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="gpt-4.1",
        input="Answer in JSON: what is a gateway?",
        text={"format": {"type": "json_object"}},
    )
    value = json.loads(response.output_text)
    assert isinstance(value, dict) and isinstance(value["answer"], str)
    assert response.usage is not None
    assert response.usage.input_tokens == 3 + _formula(
        [("user", ["Answer in JSON: what is a gateway?"], 0, [])]
    )
    completion = await client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "Reply with json please."}],
        response_format={"type": "json_object"},
    )
    content = completion.choices[0].message.content
    assert content is not None and "answer" in json.loads(content)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "No format word here."}],
            response_format={"type": "json_object"},
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages"


# --- Images -------------------------------------------------------------------


async def test_png_image_tokens_follow_the_tile_formula(client: AsyncOpenAI) -> None:
    url = png_data_url(1500, 300)  # 1500x300: 3 x 1 tiles, 85 + 3 * 170 = 595 tokens
    response = await client.responses.create(
        model="gpt-4.1",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this picture?"},
                    {"type": "input_image", "image_url": url, "detail": "high"},
                ],
            }
        ],
    )
    assert response.usage is not None
    expected = _formula([("user", ["What is in this picture?"], 595, [])])
    assert response.usage.input_tokens == expected
    completion = await client.chat.completions.create(
        model="gpt-4.1",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                ],
            }
        ],
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected - 595 + 85


async def test_https_images_are_estimated_and_other_schemes_rejected(
    client: AsyncOpenAI,
) -> None:
    def image_input(url: str) -> list[Any]:
        return [
            {
                "role": "user",
                "content": [{"type": "input_image", "image_url": url}],
            }
        ]

    response = await client.responses.create(
        model="gpt-4.1", input=image_input("https://example.com/cat.png")
    )
    assert response.usage is not None
    assert response.usage.input_tokens == _formula([("user", [], 765, [])])
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model="gpt-4.1", input=image_input("ftp://example.com/cat.png")
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "input[0].content[0].image_url"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4.1",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
                    ],
                }
            ],
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages[0].content[0].image_url.url"


# --- Reasoning ----------------------------------------------------------------


async def test_reasoning_tokens_are_reported(client: AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="o4-mini", input="Think about gateways.", reasoning={"effort": "low"}
    )
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 64
    assert response.usage.output_tokens == count_tokens(response.output_text) + 64
    assert response.reasoning is not None and response.reasoning.effort == "low"
    completion = await client.chat.completions.create(
        model="o4-mini",
        messages=[{"role": "user", "content": "Think about gateways."}],
        reasoning_effort="high",
    )
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 512
    content = completion.choices[0].message.content
    assert content is not None
    assert usage.completion_tokens == count_tokens(content) + 512
    assert "o4-mini" in [model.id async for model in client.models.list()]


# --- Streaming ----------------------------------------------------------------


async def test_responses_stream_of_tool_calls(client: AsyncOpenAI) -> None:
    text = "Call get_time and get_weather for Oslo."
    reference = await client.responses.create(model="gpt-4.1", input=text, tools=TOOLS)
    stream = await client.responses.create(
        model="gpt-4.1", input=text, tools=TOOLS, stream=True
    )
    events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[:3] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert types[-1] == "response.completed"
    assert types.count("response.output_item.added") == 2
    assert types.count("response.function_call_arguments.done") == 2
    assert types.count("response.function_call_arguments.delta") >= 4
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = [e for e in events if e.type == "response.output_item.added"]
    assert all(e.item.type == "function_call" for e in added)
    assert all(getattr(e.item, "arguments", None) == "" for e in added)
    calls = [
        (o.call_id, o.name, o.arguments)
        for o in reference.output
        if o.type == "function_call"
    ]
    for index, (_, _, arguments) in enumerate(calls):
        deltas = [
            e.delta
            for e in events
            if e.type == "response.function_call_arguments.delta"
            and e.output_index == index
        ]
        assert len(deltas) > 1
        assert "".join(deltas) == arguments
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage == reference.usage
    async with client.responses.stream(
        model="gpt-4.1", input=text, tools=TOOLS
    ) as helper:
        async for _ in helper:
            pass
        assembled = await helper.get_final_response()
    assert [
        (o.call_id, o.name, o.arguments)
        for o in assembled.output
        if o.type == "function_call"
    ] == calls


async def test_chat_stream_of_tool_calls(client: AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Call get_time and get_weather for Oslo."}
    ]
    reference = await client.chat.completions.create(
        model="gpt-4.1", messages=messages, tools=CHAT_TOOLS
    )
    stream = await client.chat.completions.create(
        model="gpt-4.1",
        messages=messages,
        tools=CHAT_TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assembled: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                entry = assembled.setdefault(
                    delta.index, {"id": "", "name": "", "arguments": ""}
                )
                if delta.id is not None:
                    assert entry["id"] == ""  # id and name come once per call
                    entry["id"] = delta.id
                if delta.function is not None:
                    entry["name"] += delta.function.name or ""
                    entry["arguments"] += delta.function.arguments or ""
    expected = reference.choices[0].message.tool_calls
    assert expected is not None and len(expected) == 2
    assert [assembled[i] for i in sorted(assembled)] == [
        {"id": call_id, "name": name, "arguments": arguments}
        for call_id, name, arguments in _function_calls(expected)
    ]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == reference.usage
    # The SDK's own stream helper assembles the same calls.
    async with client.chat.completions.stream(
        model="gpt-4.1", messages=messages, tools=CHAT_TOOLS
    ) as helper:
        final = await helper.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert _function_calls(calls) == _function_calls(expected)


async def test_broken_stream_of_tool_calls(client: AsyncOpenAI) -> None:
    fault = {"x-sim-fault": FaultKind.BROKEN_STREAM.value}
    stream = await client.responses.create(
        model="gpt-4.1",
        input=ASK_WEATHER,
        tools=TOOLS,
        stream=True,
        extra_headers=fault,
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError):
        async for event in stream:
            seen.append(event.type)
    assert "response.completed" not in seen
    chat = await client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": ASK_WEATHER}],
        tools=CHAT_TOOLS,
        stream=True,
        extra_headers=fault,
    )
    finishes: list[str | None] = []
    with pytest.raises(openai.APIError):
        async for chunk in chat:
            finishes += [c.finish_reason for c in chunk.choices]
    assert "tool_calls" not in finishes


# --- The input-token formula, against tiktoken ---------------------------------


@pytest.fixture(scope="module")
def reference_count(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Token counting by tiktoken's o200k_base, from the bundled vocabulary."""
    path = tmp_path_factory.mktemp("tiktoken") / "o200k_base.tiktoken"
    path.write_bytes(gzip.decompress(VOCABULARY.read_bytes()))

    def load_bundled(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        return tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=expected_hash)

    with (
        pytest.MonkeyPatch.context() as env,
        mock.patch.object(openai_public, "load_tiktoken_bpe", load_bundled),
    ):
        env.setenv("TIKTOKEN_CACHE_DIR", "")
        definition = openai_public.o200k_base()
    encoding = tiktoken.Encoding(
        name="o200k_base",
        pat_str=definition["pat_str"],
        mergeable_ranks=definition["mergeable_ranks"],
        special_tokens=definition["special_tokens"],
    )
    return lambda text: len(encoding.encode_ordinary(text))


async def test_input_tokens_match_an_independent_count(
    client: AsyncOpenAI, reference_count: Any
) -> None:
    instructions = "You are a travel assistant. Prefer metric units."
    user_parts = ["Plan my day in Lisbon.", "Check the weather first — ☀️?"]
    arguments = '{"city":"Lisbon","unit":"celsius","days":1}'
    schema = ARTICLE_SCHEMA
    text: Any = {"format": {"type": "json_schema", "name": "plan", "schema": schema}}
    conversation: list[Any] = [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": t} for t in user_parts],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": arguments,
        },
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": TOOL_OUTPUT,
        },
        {
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny."}],
        },
        {"role": "user", "content": "Great, now the time?"},
    ]
    response = await client.responses.create(
        model="gpt-4.1",
        instructions=instructions,
        tools=TOOLS,
        text=text,
        input=conversation,
    )
    expected = _formula(
        [
            ("system", [instructions], 0, []),
            ("user", user_parts, 0, []),
            ("assistant", [""], 0, [("get_weather", arguments)]),
            ("tool", [TOOL_OUTPUT], 0, []),
            ("assistant", ["Sunny."], 0, []),
            ("user", ["Great, now the time?"], 0, []),
        ],
        tools=TOOLS,
        schema=("plan", schema),
        count=reference_count,
    )
    assert response.usage is not None
    assert response.usage.input_tokens == expected
    # The same conversation through Chat Completions bills the same tokens.
    completion = await client.chat.completions.create(
        model="gpt-4.1",
        tools=CHAT_TOOLS,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "plan", "schema": schema},
        },
        messages=[
            {"role": "system", "content": instructions},
            {
                "role": "user",
                "content": [{"type": "text", "text": t} for t in user_parts],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": TOOL_OUTPUT},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "Great, now the time?"},
        ],
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected
