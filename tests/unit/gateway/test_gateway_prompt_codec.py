"""The request model through protobuf: one codec for CreateResponse, StreamResponse
and BatchItem, and what protobuf alone can get wrong."""

from __future__ import annotations

import pytest
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.core.conversation import (
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
    validate_prompt,
)
from services.gateway.prompt_codec import (
    PromptFields,
    decode_prompt,
    encode_prompt_fields,
)

PNG = "data:image/png;base64,iVBORw0KGgo="
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 80},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "ratio": {"type": "number", "multipleOf": 0.5},
    },
    "required": ["city"],
}
FULL = Prompt(
    instructions="Use the tools.",
    messages=(
        Message(Role.SYSTEM, ("You are a travel assistant.",)),
        Message(Role.DEVELOPER, ("Answer in English.",)),
        Message(
            Role.USER,
            (
                "What is this, and the weather here?",
                ImagePart(PNG, ImageDetail.LOW, 640, 480),
                ImagePart("https://example.com/a.png"),
            ),
        ),
        Message(
            Role.ASSISTANT,
            ("Let me look.",),
            (
                ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
                ToolCall("call_b", "get_time", "{}"),
            ),
        ),
        Message(Role.TOOL, ('{"temp":3}',), tool_call_id="call_a"),
        Message(Role.TOOL, ('"14:05"',), tool_call_id="call_b"),
        Message(Role.USER, ("Coat?",)),
    ),
    tools=(
        Tool("get_weather", "Weather by city.", SCHEMA, strict=True),
        Tool("get_time", "", {}),
    ),
    tool_choice=ToolChoice(mode=ToolChoiceMode.REQUIRED),
    parallel_tool_calls=False,
    response_format=ResponseFormat(
        FormatKind.JSON_SCHEMA, "advice", SCHEMA, strict=True, description="Advice."
    ),
    reasoning_effort=ReasoningEffort.HIGH,
)
MESSAGE_TYPES = [
    gateway_pb.CreateResponseRequest,
    gateway_pb.StreamResponseRequest,
    gateway_pb.BatchItem,
]


def _round_trip(prompt: Prompt, message_type: type[PromptFields]) -> Prompt:
    message = message_type()
    encode_prompt_fields(prompt, message)
    # Through the wire, as a server would receive it.
    received = message_type.FromString(message.SerializeToString())
    decoded, violations = decode_prompt(received)
    assert violations == []
    return decoded


@pytest.mark.parametrize("message_type", MESSAGE_TYPES)
def test_a_full_prompt_survives_each_request_message(
    message_type: type[PromptFields],
) -> None:
    decoded = _round_trip(FULL, message_type)

    assert decoded == FULL
    assert validate_prompt(decoded) == []


@pytest.mark.parametrize(
    "prompt",
    [
        Prompt(
            messages=FULL.messages[-1:],
            tools=FULL.tools,
            tool_choice=ToolChoice(function="get_time"),
        ),
        Prompt(
            messages=FULL.messages[-1:],
            tools=FULL.tools,
            tool_choice=ToolChoice(mode=ToolChoiceMode.NONE),
            parallel_tool_calls=True,
        ),
        Prompt(
            messages=FULL.messages[-1:],
            response_format=ResponseFormat(FormatKind.JSON_OBJECT),
            reasoning_effort=ReasoningEffort.MINIMAL,
        ),
        Prompt(
            messages=FULL.messages[-1:],
            response_format=ResponseFormat(FormatKind.TEXT),
        ),
    ],
    ids=["function choice", "mode none", "json_object", "text format"],
)
def test_each_choice_and_format_survives(prompt: Prompt) -> None:
    assert _round_trip(prompt, gateway_pb.CreateResponseRequest) == prompt


def test_unset_fields_stay_unset() -> None:
    decoded, violations = decode_prompt(
        gateway_pb.CreateResponseRequest(input="hi", instructions="Be brief.")
    )

    assert violations == []
    assert decoded == Prompt.of_text("hi", "Be brief.")
    assert decoded.parallel_tool_calls is None
    assert decoded.tool_choice is None
    assert decoded.response_format is None
    assert decoded.reasoning_effort is None


def test_struct_numbers_come_back_as_integers_when_integral() -> None:
    decoded = _round_trip(FULL, gateway_pb.BatchItem)

    assert decoded.tools[0].parameters is not None
    days = decoded.tools[0].parameters["properties"]["days"]
    assert days == {"type": "integer", "minimum": 1, "maximum": 7}
    assert type(days["minimum"]) is int
    assert decoded.response_format is not None
    assert decoded.response_format.schema is not None
    ratio = decoded.response_format.schema["properties"]["ratio"]
    assert type(ratio["multipleOf"]) is float


def test_both_input_and_messages_is_refused_with_a_prefix() -> None:
    item = gateway_pb.BatchItem(input="hi")
    item.messages.add(role=common_pb.ROLE_USER).content.add(text="hello")

    _, violations = decode_prompt(item, prefix="items[3].")

    assert [v.field for v in violations] == ["items[3].input"]


@pytest.mark.parametrize("blank", ["", "  \n"])
def test_neither_input_nor_messages_is_refused(blank: str) -> None:
    _, violations = decode_prompt(gateway_pb.StreamResponseRequest(input=blank))

    assert [v.field for v in violations] == ["input"]


@pytest.mark.parametrize("role", [common_pb.ROLE_UNSPECIFIED, 42])
def test_an_unspecified_or_unknown_role_is_reported_at_its_path(role: int) -> None:
    request = gateway_pb.CreateResponseRequest()
    request.messages.add(role=common_pb.ROLE_USER).content.add(text="hi")
    request.messages.add(role=role).content.add(text="hello")

    prompt, violations = decode_prompt(request)

    assert [v.field for v in violations] == ["messages[1].role"]
    assert len(prompt.messages) == 1


def test_a_content_part_with_nothing_set_is_reported_at_its_path() -> None:
    request = gateway_pb.CreateResponseRequest()
    turn = request.messages.add(role=common_pb.ROLE_USER)
    turn.content.add(text="hi")
    turn.content.add()

    _, violations = decode_prompt(request)

    assert [v.field for v in violations] == ["messages[0].content[1]"]


def test_an_unknown_reasoning_effort_is_reported() -> None:
    request = gateway_pb.CreateResponseRequest(input="hi")
    request.reasoning_effort = 42  # type: ignore[assignment]

    prompt, violations = decode_prompt(request)

    assert [v.field for v in violations] == ["reasoning_effort"]
    assert prompt.reasoning_effort is None


def test_an_unknown_image_detail_and_tool_choice_mode_are_reported() -> None:
    request = gateway_pb.CreateResponseRequest()
    image = request.messages.add(role=common_pb.ROLE_USER).content.add().image
    image.url = PNG
    image.detail = 42  # type: ignore[assignment]
    request.tool_choice.mode = 42  # type: ignore[assignment]

    _, violations = decode_prompt(request)

    assert [v.field for v in violations] == [
        "messages[0].content[0].image.detail",
        "tool_choice.mode",
    ]
