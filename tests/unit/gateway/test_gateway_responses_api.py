"""The Responses API body the gateway sends, and how it reads OpenAI's answers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from openai.types.responses import Response

from services.core.conversation import (
    FinishReason,
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
)
from services.gateway.domain import UpstreamCall, Usage
from services.gateway.responses_api import read_answer, read_answer_json, request_body

PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
ANSWER_SCHEMA = {"type": "object", "properties": {"coat": {"type": "boolean"}}}
FULL = Prompt(
    instructions="Use the tools.",
    messages=(
        Message(Role.SYSTEM, ("You are a travel assistant.",)),
        Message(Role.DEVELOPER, ("Answer in English.",)),
        Message(
            Role.USER, ("Weather and time here?", ImagePart(PNG, ImageDetail.HIGH))
        ),
        Message(
            Role.ASSISTANT,
            ("Let me look.",),
            (
                ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
                ToolCall("call_b", "get_time", '{"zone":"Europe/Oslo"}'),
            ),
        ),
        Message(Role.TOOL, ('{"temp":3}',), tool_call_id="call_a"),
        Message(Role.TOOL, ('"14:05"',), tool_call_id="call_b"),
        Message(Role.USER, ("Should I take a coat?",)),
    ),
    tools=(
        Tool("get_weather", "Weather by city.", WEATHER_SCHEMA, strict=True),
        Tool("get_time", "Local time.", {"type": "object"}),
    ),
    tool_choice=ToolChoice(function="get_weather"),
    parallel_tool_calls=False,
    response_format=ResponseFormat(
        FormatKind.JSON_SCHEMA,
        "advice",
        ANSWER_SCHEMA,
        strict=True,
        description="Whether to take a coat.",
    ),
    reasoning_effort=ReasoningEffort.LOW,
)
FULL_CALL = UpstreamCall(
    model="gpt-4.1-mini",
    prompt=FULL,
    max_output_tokens=256,
    temperature=0.2,
    top_p=0.9,
    safety_identifier="user-hash-1",
    prompt_cache_key="tenant-acme",
)


def test_a_full_prompt_has_exactly_the_responses_api_shape() -> None:
    assert request_body(FULL_CALL) == {
        "model": "gpt-4.1-mini",
        "instructions": "Use the tools.",
        "input": [
            {
                "role": "system",
                "content": [
                    {"type": "input_text", "text": "You are a travel assistant."}
                ],
            },
            {
                "role": "developer",
                "content": [{"type": "input_text", "text": "Answer in English."}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather and time here?"},
                    {"type": "input_image", "image_url": PNG, "detail": "high"},
                ],
            },
            {"role": "assistant", "content": "Let me look."},
            {
                "type": "function_call",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {
                "type": "function_call",
                "call_id": "call_b",
                "name": "get_time",
                "arguments": '{"zone":"Europe/Oslo"}',
            },
            {
                "type": "function_call_output",
                "call_id": "call_a",
                "output": '{"temp":3}',
            },
            {"type": "function_call_output", "call_id": "call_b", "output": '"14:05"'},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "Should I take a coat?"}],
            },
        ],
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather by city.",
                "parameters": WEATHER_SCHEMA,
                "strict": True,
            },
            {
                "type": "function",
                "name": "get_time",
                "description": "Local time.",
                "parameters": {"type": "object"},
                "strict": False,
            },
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "advice",
                "schema": ANSWER_SCHEMA,
                "strict": True,
                "description": "Whether to take a coat.",
            }
        },
        "reasoning": {"effort": "low"},
        "max_output_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "safety_identifier": "user-hash-1",
        "prompt_cache_key": "tenant-acme",
    }


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (ToolChoice(mode=ToolChoiceMode.REQUIRED), "required"),
        (ToolChoice(mode=ToolChoiceMode.NONE), "none"),
        (ToolChoice(mode=ToolChoiceMode.AUTO), "auto"),
    ],
)
def test_tool_choice_modes_are_sent_by_name(choice: ToolChoice, sent: str) -> None:
    call = dataclasses.replace(
        FULL_CALL, prompt=dataclasses.replace(FULL, tool_choice=choice)
    )

    assert request_body(call)["tool_choice"] == sent


def test_json_object_is_a_text_format_and_a_schema_without_description_has_none() -> (
    None
):
    json_object = dataclasses.replace(
        FULL, response_format=ResponseFormat(FormatKind.JSON_OBJECT)
    )
    plain_schema = dataclasses.replace(
        FULL,
        response_format=ResponseFormat(FormatKind.JSON_SCHEMA, "advice", ANSWER_SCHEMA),
    )

    def text(prompt: Prompt) -> Any:
        return request_body(dataclasses.replace(FULL_CALL, prompt=prompt))["text"]

    assert text(json_object) == {"format": {"type": "json_object"}}
    assert text(plain_schema) == {
        "format": {
            "type": "json_schema",
            "name": "advice",
            "schema": ANSWER_SCHEMA,
            "strict": False,
        }
    }


def test_a_plain_message_sends_input_as_a_string_and_nothing_unset() -> None:
    call = UpstreamCall("gpt-4.1-nano", Prompt.of_text("hi"), 0, None)

    assert request_body(call) == {"model": "gpt-4.1-nano", "input": "hi"}


def test_a_text_format_and_no_tools_send_no_text_or_tool_fields() -> None:
    prompt = Prompt(
        messages=(Message(Role.USER, ("a", "b")),),
        response_format=ResponseFormat(FormatKind.TEXT),
    )

    body = request_body(UpstreamCall("gpt-4.1-nano", prompt, 0, 0.0))

    assert body == {
        "model": "gpt-4.1-nano",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            }
        ],
        "temperature": 0.0,
    }


# -- reading answers


def _usage(
    input_tokens: int = 20,
    cached: int = 0,
    output_tokens: int = 8,
    reasoning: int = 0,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _response(
    output: list[dict[str, Any]],
    *,
    status: str = "completed",
    incomplete: str | None = None,
    usage: dict[str, Any] | None = None,
) -> Response:
    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1_767_225_600,
            "model": "gpt-4.1-mini-2025-04-14",
            "status": status,
            "incomplete_details": None
            if incomplete is None
            else {"reason": incomplete},
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage or _usage(),
        }
    )


def test_a_text_answer() -> None:
    answer = read_answer(_response([_message("Take a coat.")], usage=_usage(20, 16, 8)))

    assert answer.output_text == "Take a coat."
    assert answer.model == "gpt-4.1-mini-2025-04-14"
    assert answer.usage == Usage(20, 16, 8, 0)
    assert answer.finish_reason is FinishReason.STOP
    assert not answer.truncated
    assert answer.tool_calls == ()


def test_function_calls_become_tool_calls_in_order() -> None:
    output = [
        {
            "type": "function_call",
            "id": f"fc_{index}",
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
        for index, (call_id, name, arguments) in enumerate(
            [
                ("call_a", "get_weather", '{"city":"Oslo"}'),
                ("call_b", "get_time", '{"zone":"Europe/Oslo"}'),
            ]
        )
    ]

    answer = read_answer(_response(output))

    assert answer.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
        ToolCall("call_b", "get_time", '{"zone":"Europe/Oslo"}'),
    )
    assert answer.finish_reason is FinishReason.TOOL_CALLS
    assert answer.output_text == ""
    assert not answer.truncated


def test_an_answer_cut_at_max_output_tokens_is_truncated() -> None:
    answer = read_answer(
        _response(
            [_message("Take a")], status="incomplete", incomplete="max_output_tokens"
        )
    )

    assert answer.finish_reason is FinishReason.LENGTH
    assert answer.truncated
    assert answer.output_text == "Take a"


def test_an_answer_stopped_by_the_content_filter_is_not_truncated() -> None:
    answer = read_answer(
        _response([_message("")], status="incomplete", incomplete="content_filter")
    )

    assert answer.finish_reason is FinishReason.CONTENT_FILTER
    assert not answer.truncated


def test_reasoning_tokens_are_read_as_part_of_the_output() -> None:
    reasoning_item = {"type": "reasoning", "id": "rs_1", "summary": []}

    answer = read_answer(
        _response(
            [reasoning_item, _message("Yes.")],
            usage=_usage(input_tokens=30, output_tokens=200, reasoning=192),
        )
    )

    assert answer.usage == Usage(30, 0, 200, 192)
    assert answer.output_text == "Yes."
    assert answer.finish_reason is FinishReason.STOP


@pytest.mark.parametrize(
    "output",
    [
        [_message("Take a "), _message("coat.")],
        [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            _message("Yes."),
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
                "status": "completed",
            },
        ],
        [],
    ],
)
@pytest.mark.parametrize(
    ("status", "incomplete"),
    [
        ("completed", None),
        ("incomplete", "max_output_tokens"),
        ("incomplete", "content_filter"),
    ],
)
def test_the_json_reader_gives_the_answer_the_sdk_model_gives(
    output: list[dict[str, Any]], status: str, incomplete: str | None
) -> None:
    # The hot path reads the decoded body; it must agree with the SDK's model.
    response = _response(
        output, status=status, incomplete=incomplete, usage=_usage(30, 12, 200, 150)
    )

    from_json = read_answer_json(response.model_dump(mode="json"))

    assert from_json == read_answer(response)
