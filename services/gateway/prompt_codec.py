"""The request model in protobuf (``tollgate.common.v1``) and back.

One decoder serves CreateResponse, StreamResponse and every BatchItem, so the three
accept exactly the same conversations; what protobuf alone can get wrong (an enum
value no one defined, a content part with nothing set) is reported here with its
field path; the shape rules are :func:`services.core.conversation.validate_prompt`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, struct_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.core.common_codec import tool_calls_proto
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
    normalize_json,
)
from services.core.errors import FieldViolation

ROLE_FROM_PROTO: dict[int, Role] = {
    common_pb.ROLE_SYSTEM: Role.SYSTEM,
    common_pb.ROLE_DEVELOPER: Role.DEVELOPER,
    common_pb.ROLE_USER: Role.USER,
    common_pb.ROLE_ASSISTANT: Role.ASSISTANT,
    common_pb.ROLE_TOOL: Role.TOOL,
}
ROLE_TO_PROTO = {role: value for value, role in ROLE_FROM_PROTO.items()}
_DETAIL_FROM_PROTO: dict[int, ImageDetail] = {
    common_pb.IMAGE_DETAIL_UNSPECIFIED: ImageDetail.AUTO,
    common_pb.IMAGE_DETAIL_AUTO: ImageDetail.AUTO,
    common_pb.IMAGE_DETAIL_LOW: ImageDetail.LOW,
    common_pb.IMAGE_DETAIL_HIGH: ImageDetail.HIGH,
}
_DETAIL_TO_PROTO = {
    ImageDetail.AUTO: common_pb.IMAGE_DETAIL_AUTO,
    ImageDetail.LOW: common_pb.IMAGE_DETAIL_LOW,
    ImageDetail.HIGH: common_pb.IMAGE_DETAIL_HIGH,
}
_MODE_FROM_PROTO: dict[int, ToolChoiceMode] = {
    common_pb.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode.AUTO,
    common_pb.TOOL_CHOICE_MODE_AUTO: ToolChoiceMode.AUTO,
    common_pb.TOOL_CHOICE_MODE_NONE: ToolChoiceMode.NONE,
    common_pb.TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode.REQUIRED,
}
_MODE_TO_PROTO = {
    ToolChoiceMode.AUTO: common_pb.TOOL_CHOICE_MODE_AUTO,
    ToolChoiceMode.NONE: common_pb.TOOL_CHOICE_MODE_NONE,
    ToolChoiceMode.REQUIRED: common_pb.TOOL_CHOICE_MODE_REQUIRED,
}
EFFORT_FROM_PROTO: dict[int, ReasoningEffort] = {
    common_pb.REASONING_EFFORT_MINIMAL: ReasoningEffort.MINIMAL,
    common_pb.REASONING_EFFORT_LOW: ReasoningEffort.LOW,
    common_pb.REASONING_EFFORT_MEDIUM: ReasoningEffort.MEDIUM,
    common_pb.REASONING_EFFORT_HIGH: ReasoningEffort.HIGH,
}
_EFFORT_TO_PROTO = {effort: value for value, effort in EFFORT_FROM_PROTO.items()}


PromptFields = (
    gateway_pb.CreateResponseRequest
    | gateway_pb.StreamResponseRequest
    | gateway_pb.BatchItem
)
"""The messages that carry the request model's fields."""


def _struct(value: struct_pb2.Struct) -> dict[str, Any]:
    decoded: dict[str, Any] = normalize_json(json_format.MessageToDict(value))
    return decoded


def decode_prompt(
    message: PromptFields, *, prefix: str = ""
) -> tuple[Prompt, list[FieldViolation]]:
    """The prompt of a request message and what protobuf alone got wrong.

    ``input`` is the shorthand for one user message; a request gives it or
    ``messages``, not both. The shape rules are checked apart, by
    :func:`services.core.conversation.validate_prompt`, once the decode is clean.
    """
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(prefix + path, description))

    messages: list[Message] = []
    if message.messages and message.input:
        bad("input", "give either input or messages, not both")
    elif not message.messages and not message.input.strip():
        bad("input", "either input or messages is required")
    if message.input:
        messages.append(Message(Role.USER, (message.input,)))
    for index, turn in enumerate(message.messages):
        path = f"messages[{index}]"
        role = ROLE_FROM_PROTO.get(turn.role)
        if role is None:
            bad(f"{path}.role", f"unknown role value {turn.role}")
            continue
        messages.append(
            Message(
                role,
                tuple(_content(turn.content, f"{path}.content", bad)),
                tuple(
                    ToolCall(call.id, call.name, call.arguments)
                    for call in turn.tool_calls
                ),
                turn.tool_call_id,
            )
        )
    tools = tuple(
        Tool(
            tool.name,
            tool.description,
            _struct(tool.parameters) if tool.HasField("parameters") else None,
            tool.strict,
        )
        for tool in message.tools
    )
    tool_choice: ToolChoice | None = None
    if message.HasField("tool_choice"):
        kind = message.tool_choice.WhichOneof("choice")
        if kind == "function":
            tool_choice = ToolChoice(function=message.tool_choice.function)
        else:
            mode = _MODE_FROM_PROTO.get(message.tool_choice.mode)
            if mode is None:
                bad(
                    "tool_choice.mode", f"unknown mode value {message.tool_choice.mode}"
                )
            tool_choice = ToolChoice(mode=mode or ToolChoiceMode.AUTO)
    effort: ReasoningEffort | None = None
    if message.reasoning_effort:
        effort = EFFORT_FROM_PROTO.get(message.reasoning_effort)
        if effort is None:
            bad("reasoning_effort", f"unknown value {message.reasoning_effort}")
    prompt = Prompt(
        instructions=message.instructions,
        messages=tuple(messages),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=(
            message.parallel_tool_calls
            if message.HasField("parallel_tool_calls")
            else None
        ),
        response_format=(
            _response_format(message.response_format)
            if message.HasField("response_format")
            else None
        ),
        reasoning_effort=effort,
    )
    return prompt, violations


def _content(
    parts: Iterable[common_pb.ContentPart], path: str, bad: Any
) -> Iterable[str | ImagePart]:
    for index, part in enumerate(parts):
        kind = part.WhichOneof("part")
        if kind == "text":
            yield part.text
        elif kind == "image":
            image = part.image
            detail = _DETAIL_FROM_PROTO.get(image.detail)
            if detail is None:
                bad(f"{path}[{index}].image.detail", f"unknown detail {image.detail}")
            yield ImagePart(
                image.url, detail or ImageDetail.AUTO, image.width_px, image.height_px
            )
        else:
            bad(f"{path}[{index}]", "must hold text or an image")


def _response_format(value: common_pb.ResponseFormat) -> ResponseFormat:
    kind = value.WhichOneof("format")
    if kind == "json_schema":
        schema = value.json_schema
        return ResponseFormat(
            FormatKind.JSON_SCHEMA,
            name=schema.name,
            schema=_struct(schema.schema) if schema.HasField("schema") else None,
            strict=schema.strict,
            description=schema.description,
        )
    if kind == "json_object":
        return ResponseFormat(FormatKind.JSON_OBJECT)
    return ResponseFormat(FormatKind.TEXT)


def _struct_proto(value: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(value or {}))
    return struct


def encode_prompt_fields(prompt: Prompt, target: Any) -> None:
    """Write ``prompt`` into a request message's request-model fields.

    Used by clients of the gateway (the CLI, benchmarks, tests) that hold a prompt.
    """
    target.instructions = prompt.instructions
    for message in prompt.messages:
        turn = target.messages.add(
            role=ROLE_TO_PROTO[message.role], tool_call_id=message.tool_call_id
        )
        for part in message.content:
            if isinstance(part, str):
                turn.content.add(text=part)
            else:
                turn.content.add(
                    image=common_pb.ImageInput(
                        url=part.url,
                        detail=_DETAIL_TO_PROTO[part.detail],
                        width_px=part.width,
                        height_px=part.height,
                    )
                )
        turn.tool_calls.extend(tool_calls_proto(message.tool_calls))
    for tool in prompt.tools:
        target.tools.add(
            name=tool.name,
            description=tool.description,
            parameters=_struct_proto(tool.parameters),
            strict=tool.strict,
        )
    if prompt.tool_choice is not None:
        if prompt.tool_choice.function:
            target.tool_choice.function = prompt.tool_choice.function
        elif prompt.tool_choice.mode is not None:
            target.tool_choice.mode = _MODE_TO_PROTO[prompt.tool_choice.mode]
    if prompt.parallel_tool_calls is not None:
        target.parallel_tool_calls = prompt.parallel_tool_calls
    fmt = prompt.response_format
    if fmt is not None:
        if fmt.kind is FormatKind.JSON_SCHEMA:
            target.response_format.json_schema.CopyFrom(
                common_pb.JsonSchemaFormat(
                    name=fmt.name,
                    schema=_struct_proto(fmt.schema),
                    strict=fmt.strict,
                    description=fmt.description,
                )
            )
        elif fmt.kind is FormatKind.JSON_OBJECT:
            target.response_format.json_object.SetInParent()
        else:
            target.response_format.text.SetInParent()
    if prompt.reasoning_effort is not None:
        target.reasoning_effort = _EFFORT_TO_PROTO[prompt.reasoning_effort]
