"""OpenAI's request bodies into the gateway's :class:`ResponseRequest`.

Two shapes decode into the same request model: Chat Completions (``messages`` with
roles, content strings or parts, assistant ``tool_calls``, ``tool_call_id``) and
the Responses API (``input`` as a string or items: messages, ``function_call``,
``function_call_output``; ``instructions``; ``text.format``). Problems are raised
as :class:`InvalidArgumentError` whose first violation names the offending field
the way OpenAI names it (``messages[3].tool_call_id``, ``input[2].call_id``,
``tools[0].function.name``), so ``BadRequestError.param`` points at the caller's
own JSON.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.core.conversation import (
    MAX_SAFETY_IDENTIFIER_CHARS,
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
from services.core.errors import FieldViolation, InvalidArgumentError
from services.gateway.batches import metadata_violations
from services.gateway.domain import Priority, RequestType, ResponseRequest
from services.gateway.servicer import (
    MAX_INSTRUCTIONS_BYTES,
    MAX_MODEL_CHARS,
    MAX_OUTPUT_TOKENS_LIMIT,
    MAX_USER_ID_CHARS,
)

Body = Mapping[str, Any]

PRIORITIES = {priority.name.lower(): priority for priority in Priority}
REQUEST_TYPES = {kind.value: kind for kind in RequestType}
_EFFORTS = {effort.value: effort for effort in ReasoningEffort}
_DETAILS = {detail.value: detail for detail in ImageDetail}
_MESSAGE_PATH = re.compile(r"^messages\[(\d+)\](.*)$")
_CONTENT_PATH = re.compile(r"^\.content\[(\d+)\](.*)$")
_CALL_PATH = re.compile(r"^\.tool_calls\[(\d+)\](.*)$")
_TOOL_PATH = re.compile(r"^tools\[(\d+)\]\.(.*)$")


class Api(enum.Enum):
    """Which of OpenAI's request shapes a body has."""

    CHAT = "chat"
    RESPONSES = "responses"


@dataclass(frozen=True, slots=True)
class DoorHeaders:
    """Tollgate's request headers (``x-tollgate-*``) and the request id."""

    priority: Priority = Priority.STANDARD
    request_type: RequestType = RequestType.CHAT
    cache_bypass: bool = False
    user: str = ""


@dataclass(frozen=True, slots=True)
class DoorRequest:
    """A decoded request: the domain request and how the caller wants the answer."""

    request: ResponseRequest
    api: Api
    requested_model: str
    stream: bool
    include_usage: bool = False


@dataclass
class _Sources:
    """Where each prompt message came from in the caller's JSON."""

    api: Api
    messages: list[str] = field(default_factory=list)
    string_content: list[bool] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)

    def add(
        self, path: str, string_content: bool, calls: list[str] | None = None
    ) -> None:
        self.messages.append(path)
        self.string_content.append(string_content)
        self.calls.append(calls or [])

    def param(self, path: str) -> str:
        """``path`` as the validators name it, in the caller's JSON terms."""
        chat = self.api is Api.CHAT
        match = _MESSAGE_PATH.match(path)
        if match is not None:
            index, rest = int(match.group(1)), match.group(2)
            if index >= len(self.messages):
                return path
            base = self.messages[index]
            content = _CONTENT_PATH.match(rest)
            if content is not None:
                if self.string_content[index]:
                    return f"{base}.content"
                part, tail = content.groups()
                if tail.startswith(".image.url"):
                    tail = ".image_url.url" if chat else ".image_url"
                elif tail.startswith(".image"):
                    tail = ""
                return f"{base}.content[{part}]{tail}"
            call = _CALL_PATH.match(rest)
            if call is not None and not chat:
                position, tail = int(call.group(1)), call.group(2)
                calls = self.calls[index]
                if position < len(calls):
                    return calls[position] + (".call_id" if tail == ".id" else tail)
            if call is not None and chat:
                position, tail = int(call.group(1)), call.group(2)
                if tail == ".name":
                    tail = ".function.name"
                return f"{base}.tool_calls[{position}]{tail}"
            if rest == ".tool_call_id" and not chat:
                return f"{base}.call_id"
            return base + rest
        if path == "messages":
            return "messages" if chat else "input"
        tool = _TOOL_PATH.match(path)
        if (
            tool is not None
            and chat
            and tool.group(2) in ("name", "parameters", "description")
        ):
            return f"tools[{tool.group(1)}].function.{tool.group(2)}"
        if path == "tool_choice.function":
            return "tool_choice.function.name" if chat else "tool_choice.name"
        if path.startswith("response_format.json_schema.") and not chat:
            return "text.format." + path.removeprefix("response_format.json_schema.")
        return path


def _fail(param: str, message: str) -> InvalidArgumentError:
    return InvalidArgumentError([FieldViolation(param, message)])


def _type_name(expected: str) -> str:
    return expected


def _object(value: Any, param: str) -> Body:
    if not isinstance(value, Mapping):
        raise _fail(param, f"Invalid type for '{param}': expected an object.")
    return value


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(param, f"Invalid type for '{param}': expected an array.")
    return value


def _string(body: Body, key: str, param: str, *, required: bool = False) -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise _fail(param, f"Missing required parameter: '{param}'.")
        return ""
    if not isinstance(value, str):
        raise _fail(param, f"Invalid type for '{param}': expected a string.")
    return value


def _bool(body: Body, key: str, param: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _fail(param, f"Invalid type for '{param}': expected a boolean.")
    return value


def _number(
    body: Body, key: str, low: float, high: float, param: str | None = None
) -> float | None:
    value = body.get(key)
    param = param or key
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(param, f"Invalid type for '{param}': expected a number.")
    if not (math.isfinite(value) and low <= value <= high):
        raise _fail(param, f"'{param}' must be between {low:g} and {high:g}.")
    return float(value)


def _int(body: Body, key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"Invalid type for '{key}': expected an integer.")
    if not low <= value <= high:
        raise _fail(key, f"'{key}' must be between {low} and {high}.")
    return value


def decode_headers(headers: Mapping[str, str]) -> DoorHeaders:
    """Tollgate's ``x-tollgate-*`` request headers.

    Raises:
        InvalidArgumentError: a header has a value Tollgate does not know.
    """
    priority_name = headers.get("x-tollgate-priority", "").strip().lower()
    priority = PRIORITIES.get(priority_name or "standard")
    if priority is None:
        raise _fail(
            "x-tollgate-priority",
            f"unknown priority {priority_name[:32]!r}; one of {', '.join(PRIORITIES)}",
        )
    type_name = headers.get("x-tollgate-request-type", "").strip().lower()
    request_type = REQUEST_TYPES.get(type_name or "chat")
    if request_type is None:
        raise _fail(
            "x-tollgate-request-type",
            f"unknown request type {type_name[:32]!r}; one of "
            f"{', '.join(REQUEST_TYPES)}",
        )
    cache = headers.get("x-tollgate-cache", "").strip().lower()
    if cache not in ("", "bypass", "default"):
        raise _fail("x-tollgate-cache", "must be 'bypass' or absent")
    return DoorHeaders(
        priority=priority,
        request_type=request_type,
        cache_bypass=cache == "bypass",
        user=headers.get("x-tollgate-user", "").strip(),
    )


# -- content


def _image(url: Any, detail: Any, param: str) -> ImagePart:
    if not isinstance(url, str):
        raise _fail(param, f"Invalid type for '{param}': expected a string.")
    chosen = _DETAILS.get(detail if isinstance(detail, str) else "auto")
    if chosen is None:
        raise _fail(
            param.rsplit(".", 1)[0] + ".detail",
            "must be one of 'auto', 'low', 'high'",
        )
    return ImagePart(url, chosen)


def _chat_content(
    value: Any, param: str, role: Role
) -> tuple[tuple[str | ImagePart, ...], bool]:
    """The parts of a chat message's content, and whether it was a plain string."""
    if value is None:
        return (), False
    if isinstance(value, str):
        return (value,), True
    parts: list[str | ImagePart] = []
    for index, raw in enumerate(_list(value, param)):
        where = f"{param}[{index}]"
        part = _object(raw, where)
        kind = part.get("type")
        if kind == "text":
            parts.append(_string(part, "text", f"{where}.text", required=True))
        elif kind == "refusal" and role is Role.ASSISTANT:
            parts.append(_string(part, "refusal", f"{where}.refusal", required=True))
        elif kind == "image_url":
            image = _object(part.get("image_url"), f"{where}.image_url")
            parts.append(
                _image(image.get("url"), image.get("detail"), f"{where}.image_url.url")
            )
        else:
            raise _fail(
                f"{where}.type",
                f"unsupported content part type {str(kind)[:32]!r}: this gateway "
                "accepts 'text' and 'image_url'",
            )
    return tuple(parts), False


def _responses_content(
    value: Any, param: str
) -> tuple[tuple[str | ImagePart, ...], bool]:
    if isinstance(value, str):
        return (value,), True
    parts: list[str | ImagePart] = []
    for index, raw in enumerate(_list(value, param)):
        where = f"{param}[{index}]"
        part = _object(raw, where)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(_string(part, "text", f"{where}.text", required=True))
        elif kind == "refusal":
            parts.append(_string(part, "refusal", f"{where}.refusal", required=True))
        elif kind == "input_image":
            if part.get("image_url") is None:
                raise _fail(
                    f"{where}.image_url",
                    "images need an image_url (https or data URL); file_id is not "
                    "supported by this gateway",
                )
            parts.append(
                _image(part.get("image_url"), part.get("detail"), f"{where}.image_url")
            )
        else:
            raise _fail(
                f"{where}.type",
                f"unsupported content part type {str(kind)[:32]!r}: this gateway "
                "accepts 'input_text', 'output_text' and 'input_image'",
            )
    return tuple(parts), False


# -- messages


_CHAT_ROLES = {role.value: role for role in Role}


def _chat_messages(body: Body, sources: _Sources) -> tuple[str, list[Message]]:
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise _fail("messages", "Missing required parameter: 'messages'.")
    items = _list(raw_messages, "messages")
    if not items:
        raise _fail("messages", "'messages' must hold at least one message.")
    messages: list[Message] = []
    instructions = ""
    for index, raw in enumerate(items):
        where = f"messages[{index}]"
        item = _object(raw, where)
        role_name = item.get("role")
        role = _CHAT_ROLES.get(role_name) if isinstance(role_name, str) else None
        if role is None:
            raise _fail(
                f"{where}.role",
                f"unsupported role {str(role_name)[:32]!r}: one of system, "
                "developer, user, assistant, tool",
            )
        content, plain = _chat_content(item.get("content"), f"{where}.content", role)
        if (
            index == 0
            and role in (Role.SYSTEM, Role.DEVELOPER)
            and plain
            and len(items) > 1
        ):
            # A leading system prompt is the request's instructions: the same
            # request as gRPC's ``instructions`` plus messages, cached alike.
            instructions = str(content[0])
            continue
        calls: list[ToolCall] = []
        if item.get("tool_calls") is not None:
            for position, raw_call in enumerate(
                _list(item.get("tool_calls"), f"{where}.tool_calls")
            ):
                call_where = f"{where}.tool_calls[{position}]"
                call = _object(raw_call, call_where)
                function = _object(call.get("function"), f"{call_where}.function")
                calls.append(
                    ToolCall(
                        _string(call, "id", f"{call_where}.id", required=True),
                        _string(
                            function,
                            "name",
                            f"{call_where}.function.name",
                            required=True,
                        ),
                        _string(
                            function, "arguments", f"{call_where}.function.arguments"
                        )
                        or "{}",
                    )
                )
        tool_call_id = _string(item, "tool_call_id", f"{where}.tool_call_id")
        sources.add(where, plain)
        messages.append(Message(role, content, tuple(calls), tool_call_id))
    return instructions, messages


_INPUT_ROLES = {
    "user": Role.USER,
    "system": Role.SYSTEM,
    "developer": Role.DEVELOPER,
    "assistant": Role.ASSISTANT,
}


def _responses_messages(body: Body, sources: _Sources) -> list[Message]:
    value = body.get("input")
    if value is None:
        raise _fail("input", "Missing required parameter: 'input'.")
    if isinstance(value, str):
        sources.add("input", True)
        return [Message(Role.USER, (value,))]
    items = _list(value, "input")
    if not items:
        raise _fail("input", "'input' must hold at least one item.")
    messages: list[Message] = []
    # Consecutive function_call items are one assistant turn with several calls.
    pending_calls: list[ToolCall] = []
    pending_sources: list[str] = []

    def flush_calls() -> None:
        if not pending_calls:
            return
        sources.add(pending_sources[0], False, list(pending_sources))
        messages.append(Message(Role.ASSISTANT, (), tuple(pending_calls)))
        pending_calls.clear()
        pending_sources.clear()

    for index, raw in enumerate(items):
        where = f"input[{index}]"
        item = _object(raw, where)
        kind = item.get("type", "message")
        if kind == "function_call":
            pending_calls.append(
                ToolCall(
                    _string(item, "call_id", f"{where}.call_id", required=True),
                    _string(item, "name", f"{where}.name", required=True),
                    _string(item, "arguments", f"{where}.arguments") or "{}",
                )
            )
            pending_sources.append(where)
            continue
        if kind == "reasoning":
            continue  # a reasoning item is the model's own; nothing to send back
        flush_calls()
        if kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                content, plain = _responses_content(output, f"{where}.output")
            elif isinstance(output, str):
                content, plain = (output,), True
            else:
                raise _fail(
                    f"{where}.output", "Invalid type: expected a string or an array."
                )
            sources.add(where, plain)
            messages.append(
                Message(
                    Role.TOOL,
                    content,
                    (),
                    _string(item, "call_id", f"{where}.call_id", required=True),
                )
            )
            continue
        if kind != "message":
            raise _fail(
                f"{where}.type",
                f"unsupported input item type {str(kind)[:32]!r}: this gateway "
                "accepts message, function_call and function_call_output",
            )
        role_name = item.get("role")
        role = _INPUT_ROLES.get(role_name) if isinstance(role_name, str) else None
        if role is None:
            raise _fail(
                f"{where}.role",
                f"unsupported role {str(role_name)[:32]!r}: one of user, system, "
                "developer, assistant",
            )
        content, plain = _responses_content(item.get("content"), f"{where}.content")
        sources.add(where, plain)
        messages.append(Message(role, content))
    flush_calls()
    return messages


# -- tools and formats


def _tools(body: Body, api: Api) -> tuple[Tool, ...]:
    value = body.get("tools")
    if value is None:
        return ()
    tools: list[Tool] = []
    for index, raw in enumerate(_list(value, "tools")):
        where = f"tools[{index}]"
        item = _object(raw, where)
        if item.get("type") != "function":
            raise _fail(
                f"{where}.type",
                f"unsupported tool type {str(item.get('type'))[:32]!r}: this gateway "
                "accepts function tools",
            )
        spec = item
        prefix = where
        if api is Api.CHAT:
            prefix = f"{where}.function"
            spec = _object(item.get("function"), prefix)
        parameters = spec.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise _fail(f"{prefix}.parameters", "must be a JSON object")
        tools.append(
            Tool(
                _string(spec, "name", f"{prefix}.name", required=True),
                _string(spec, "description", f"{prefix}.description"),
                dict(parameters) if parameters is not None else None,
                bool(_bool(spec, "strict", f"{prefix}.strict")),
            )
        )
    return tuple(tools)


def _tool_choice(body: Body, api: Api) -> ToolChoice | None:
    value = body.get("tool_choice")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return ToolChoice(mode=ToolChoiceMode(value))
        except ValueError:
            raise _fail(
                "tool_choice", "must be 'auto', 'none', 'required' or a function"
            ) from None
    choice = _object(value, "tool_choice")
    if choice.get("type") != "function":
        raise _fail("tool_choice.type", "this gateway accepts only function choices")
    if api is Api.CHAT:
        function = _object(choice.get("function"), "tool_choice.function")
        name = _string(function, "name", "tool_choice.function.name", required=True)
    else:
        name = _string(choice, "name", "tool_choice.name", required=True)
    return ToolChoice(function=name)


def _format(spec: Body | None, param: str, nested: bool) -> ResponseFormat | None:
    """A ``response_format`` (chat: schema under ``json_schema``) or ``text.format``."""
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "text":
        return ResponseFormat(FormatKind.TEXT)
    if kind == "json_object":
        return ResponseFormat(FormatKind.JSON_OBJECT)
    if kind != "json_schema":
        raise _fail(
            f"{param}.type", "must be one of 'text', 'json_object', 'json_schema'"
        )
    where = f"{param}.json_schema" if nested else param
    schema_spec = _object(spec.get("json_schema"), where) if nested else spec
    schema = schema_spec.get("schema")
    if schema is not None and not isinstance(schema, Mapping):
        raise _fail(f"{where}.schema", "must be a JSON object")
    return ResponseFormat(
        FormatKind.JSON_SCHEMA,
        name=_string(schema_spec, "name", f"{where}.name", required=True),
        schema=dict(schema) if schema is not None else None,
        strict=bool(_bool(schema_spec, "strict", f"{where}.strict")),
        description=_string(schema_spec, "description", f"{where}.description"),
    )


def _effort(value: Any, param: str) -> ReasoningEffort | None:
    if value is None:
        return None
    effort = _EFFORTS.get(value) if isinstance(value, str) else None
    if effort is None:
        raise _fail(param, "must be one of 'minimal', 'low', 'medium', 'high'")
    return effort


def _metadata(body: Body) -> dict[str, str]:
    value = body.get("metadata")
    if value is None:
        return {}
    metadata = _object(value, "metadata")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise _fail("metadata", "values must be strings")
    return {str(k): v for k, v in metadata.items()}


# -- the two request shapes


def decode_chat(body: Body, headers: DoorHeaders) -> DoorRequest:
    """A Chat Completions body as a door request.

    Raises:
        InvalidArgumentError: with OpenAI's parameter name first.
    """
    sources = _Sources(Api.CHAT)
    model = _string(body, "model", "model", required=True)
    instructions, messages = _chat_messages(body, sources)
    n = _int(body, "n", 1, 128)
    if n is not None and n != 1:
        raise _fail("n", "this gateway answers one choice per request: n must be 1")
    max_tokens = _int(body, "max_completion_tokens", 1, MAX_OUTPUT_TOKENS_LIMIT)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, MAX_OUTPUT_TOKENS_LIMIT)
    format_spec = body.get("response_format")
    prompt = Prompt(
        instructions=instructions,
        messages=tuple(messages),
        tools=_tools(body, Api.CHAT),
        tool_choice=_tool_choice(body, Api.CHAT),
        parallel_tool_calls=_bool(body, "parallel_tool_calls", "parallel_tool_calls"),
        response_format=_format(
            None if format_spec is None else _object(format_spec, "response_format"),
            "response_format",
            nested=True,
        ),
        reasoning_effort=_effort(body.get("reasoning_effort"), "reasoning_effort"),
    )
    stream = bool(_bool(body, "stream", "stream"))
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        include_usage = bool(
            _bool(
                _object(options, "stream_options"),
                "include_usage",
                "stream_options.include_usage",
            )
        )
    request = _request(body, headers, model, prompt, max_tokens or 0, sources)
    return DoorRequest(request, Api.CHAT, model, stream, include_usage)


def decode_responses(body: Body, headers: DoorHeaders) -> DoorRequest:
    """A Responses API body as a door request.

    Raises:
        InvalidArgumentError: with OpenAI's parameter name first.
    """
    sources = _Sources(Api.RESPONSES)
    model = _string(body, "model", "model", required=True)
    if body.get("previous_response_id") is not None:
        raise _fail(
            "previous_response_id",
            "this gateway keeps no conversation state: send the whole conversation "
            "in 'input'",
        )
    if body.get("background"):
        raise _fail("background", "background responses are not supported")
    messages = _responses_messages(body, sources)
    text = body.get("text")
    format_spec = None
    if text is not None:
        text_spec = _object(text, "text")
        if text_spec.get("format") is not None:
            format_spec = _object(text_spec.get("format"), "text.format")
    reasoning = body.get("reasoning")
    effort = None
    if reasoning is not None:
        effort = _effort(
            _object(reasoning, "reasoning").get("effort"), "reasoning.effort"
        )
    prompt = Prompt(
        instructions=_string(body, "instructions", "instructions"),
        messages=tuple(messages),
        tools=_tools(body, Api.RESPONSES),
        tool_choice=_tool_choice(body, Api.RESPONSES),
        parallel_tool_calls=_bool(body, "parallel_tool_calls", "parallel_tool_calls"),
        response_format=_format(format_spec, "text.format", nested=False),
        reasoning_effort=effort,
    )
    max_tokens = _int(body, "max_output_tokens", 1, MAX_OUTPUT_TOKENS_LIMIT)
    request = _request(body, headers, model, prompt, max_tokens or 0, sources)
    return DoorRequest(
        request, Api.RESPONSES, model, bool(_bool(body, "stream", "stream"))
    )


def _request(
    body: Body,
    headers: DoorHeaders,
    model: str,
    prompt: Prompt,
    max_output_tokens: int,
    sources: _Sources,
) -> ResponseRequest:
    violations = [
        FieldViolation(sources.param(v.field), v.description)
        for v in validate_prompt(prompt)
    ]

    def bad(param: str, description: str) -> None:
        violations.append(FieldViolation(param, description))

    if len(model) > MAX_MODEL_CHARS:
        bad("model", f"must be at most {MAX_MODEL_CHARS} characters")
    if (
        len(prompt.instructions.encode("utf-8", "surrogatepass"))
        > MAX_INSTRUCTIONS_BYTES
    ):
        bad(
            "instructions" if sources.api is Api.RESPONSES else "messages[0].content",
            f"must be at most {MAX_INSTRUCTIONS_BYTES} bytes",
        )
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    safety_identifier = _string(body, "safety_identifier", "safety_identifier")
    if len(safety_identifier) > MAX_SAFETY_IDENTIFIER_CHARS:
        bad(
            "safety_identifier",
            f"must be at most {MAX_SAFETY_IDENTIFIER_CHARS} characters",
        )
    user = headers.user or _string(body, "user", "user") or safety_identifier
    if len(user) > MAX_USER_ID_CHARS:
        bad(
            "x-tollgate-user" if headers.user else "user",
            f"must be at most {MAX_USER_ID_CHARS} characters",
        )
    metadata = _metadata(body)
    violations.extend(metadata_violations(metadata))
    if violations:
        raise InvalidArgumentError(violations)
    return ResponseRequest(
        prompt=prompt,
        model=model.strip(),
        priority=headers.priority,
        request_type=headers.request_type,
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        user_id=user,
        metadata=metadata,
        cache_bypass=headers.cache_bypass,
        top_p=top_p,
        safety_identifier=safety_identifier,
    )


Decoder = Callable[[Body, DoorHeaders], DoorRequest]
