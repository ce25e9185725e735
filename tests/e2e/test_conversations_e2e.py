"""Real application traffic through the five services: conversations, tools, schemas.

Each request goes through the gateway's gRPC door, the router, the limiter, the
cache and the ledger, to the simulator, which answers like OpenAI (function calls
valid against the tool's schema, JSON valid against a response schema, image tokens
by the tile formula).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jsonschema
import pytest
from google.protobuf import struct_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.core.prompt_tokens import count_prompt
from services.devsuite import Suite
from services.gateway.prompt_codec import decode_prompt
from tests.e2e.conftest import E2E_KEY
from tests.images import png_data_url

pytestmark = pytest.mark.e2e

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)

WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "total_cents": {"type": "integer", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                },
                "required": ["sku", "quantity"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["vendor", "total_cents", "currency", "lines"],
    "additionalProperties": False,
}


@pytest.fixture
async def gateway(suite: Suite) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _text(role: common_pb.Role, text: str) -> common_pb.Message:
    return common_pb.Message(role=role, content=[common_pb.ContentPart(text=text)])


def _user(text: str) -> common_pb.Message:
    return _text(common_pb.ROLE_USER, text)


def _assistant(text: str) -> common_pb.Message:
    return _text(common_pb.ROLE_ASSISTANT, text)


def _weather_tool() -> common_pb.Tool:
    return common_pb.Tool(
        name="get_weather",
        description="The forecast for a city.",
        parameters=_struct(WEATHER_PARAMETERS),
        strict=True,
    )


def _billed_tokens(request: gateway_pb.CreateResponseRequest) -> int:
    """The input tokens the gateway counts for ``request``, as OpenAI bills them."""
    prompt, problems = decode_prompt(request)
    assert problems == []
    return count_prompt(prompt).total


async def test_a_three_turn_conversation_is_answered_and_billed_as_counted(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.CreateResponseRequest(
        instructions="You are a patient tutor.",
        messages=[
            _user("What is a token bucket?"),
            _assistant("A bucket that refills with tokens at a fixed rate."),
            _user("And what happens when it is empty?"),
            _assistant("Requests wait or are refused until tokens refill."),
            _user("How big should the bucket be for bursts of 20 requests?"),
        ],
        temperature=0.0,
    )

    reply = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    assert reply.output_text.startswith('Simulated answer to "How big should')
    assert reply.finish_reason == common_pb.FINISH_REASON_STOP
    assert reply.usage.input_tokens == _billed_tokens(request)
    assert reply.cost_micros > 0


async def test_a_tool_calling_loop_calls_the_tool_then_answers_with_its_result(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    question = _user("Use get_weather: will it rain in Paris this week?")
    first = gateway_pb.CreateResponseRequest(
        messages=[question], tools=[_weather_tool()]
    )

    called = await gateway.CreateResponse(first, metadata=AUTH, timeout=30)

    assert called.finish_reason == common_pb.FINISH_REASON_TOOL_CALLS
    [call] = called.tool_calls
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)
    assert called.usage.input_tokens == _billed_tokens(first)

    second = gateway_pb.CreateResponseRequest(
        messages=[
            question,
            common_pb.Message(role=common_pb.ROLE_ASSISTANT, tool_calls=[call]),
            common_pb.Message(
                role=common_pb.ROLE_TOOL,
                tool_call_id=call.id,
                content=[common_pb.ContentPart(text="Rain on Tuesday, 14 C.")],
            ),
        ],
        tools=[_weather_tool()],
    )

    answered = await gateway.CreateResponse(second, metadata=AUTH, timeout=30)

    assert answered.finish_reason == common_pb.FINISH_REASON_STOP
    assert not answered.tool_calls
    assert "Rain on Tuesday" in answered.output_text
    assert answered.usage.input_tokens == _billed_tokens(second)


async def test_a_strict_json_schema_answer_validates(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.CreateResponseRequest(
        input="Extract the invoice: ACME GmbH, 2 x SKU-1, 1 x SKU-9, 129.00 EUR.",
        response_format=common_pb.ResponseFormat(
            json_schema=common_pb.JsonSchemaFormat(
                name="invoice", schema=_struct(INVOICE_SCHEMA), strict=True
            )
        ),
    )

    reply = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    jsonschema.validate(json.loads(reply.output_text), INVOICE_SCHEMA)
    assert reply.usage.input_tokens == _billed_tokens(request)


async def test_an_image_is_billed_by_its_tiles_and_cached_exactly(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.CreateResponseRequest(
        messages=[
            common_pb.Message(
                role=common_pb.ROLE_USER,
                content=[
                    common_pb.ContentPart(text="What is on this screenshot?"),
                    common_pb.ContentPart(
                        image=common_pb.ImageInput(
                            url=png_data_url(1024, 512),
                            detail=common_pb.IMAGE_DETAIL_HIGH,
                        )
                    ),
                ],
            )
        ],
        temperature=0.0,
    )

    first = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)
    again = await gateway.CreateResponse(request, metadata=AUTH, timeout=30)

    # 1024x512 high detail: no scaling (shortest side under 768), 2 x 1 tiles.
    text_only = request.__deepcopy__()
    del text_only.messages[0].content[1]
    assert first.usage.input_tokens == _billed_tokens(text_only) + 85 + 2 * 170
    assert first.usage.input_tokens == _billed_tokens(request)
    assert first.cache_status == common_pb.CACHE_STATUS_MISS
    assert again.cache_status == common_pb.CACHE_STATUS_EXACT
    assert again.output_text == first.output_text


async def test_a_streamed_tool_call_arrives_in_pieces_that_assemble_to_the_call(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    request = gateway_pb.StreamResponseRequest(
        input="What should I pack for Lisbon?",
        tools=[_weather_tool()],
        tool_choice=common_pb.ToolChoice(function="get_weather"),
    )
    pieces: list[gateway_pb.ToolCallDelta] = []
    completed: gateway_pb.StreamCompleted | None = None

    async for event in gateway.StreamResponse(request, metadata=AUTH, timeout=30):
        kind = event.WhichOneof("event")
        if kind == "tool_call_delta":
            pieces.append(event.tool_call_delta)
        elif kind == "completed":
            completed = event.completed

    assert completed is not None
    assert completed.finish_reason == common_pb.FINISH_REASON_TOOL_CALLS
    [call] = completed.tool_calls
    assert len(pieces) > 1
    assert (pieces[0].index, pieces[0].id, pieces[0].name) == (0, call.id, call.name)
    assert "".join(piece.arguments_delta for piece in pieces) == call.arguments
    jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)


async def test_a_repeated_conversation_hits_exactly_and_other_turns_never_do(
    gateway: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    question = _user("Which of them is cheaper per request?")

    def asked_after(earlier: str) -> gateway_pb.CreateResponseRequest:
        return gateway_pb.CreateResponseRequest(
            messages=[_user(earlier), _assistant("Both have a free tier."), question],
            temperature=0.0,
        )

    first = await gateway.CreateResponse(
        asked_after("Compare Redis and Memcached."), metadata=AUTH, timeout=30
    )
    repeated = await gateway.CreateResponse(
        asked_after("Compare Redis and Memcached."), metadata=AUTH, timeout=30
    )
    elsewhere = await gateway.CreateResponse(
        asked_after("Compare Postgres and MySQL."), metadata=AUTH, timeout=30
    )

    assert first.cache_status == common_pb.CACHE_STATUS_MISS
    assert repeated.cache_status == common_pb.CACHE_STATUS_EXACT
    assert repeated.output_text == first.output_text
    # The same last question after other turns is another conversation: no exact
    # hit, and no semantic one either (the context digest is a hard filter).
    assert elsewhere.cache_status == common_pb.CACHE_STATUS_MISS
