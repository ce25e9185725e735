"""Typed reading and validation of request bodies.

Every helper raises :class:`~services.simulator.errors.ApiError` (400) with the
offending ``param``, in OpenAI's wording where it is known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from aiohttp import web

from services.simulator.errors import ApiError, invalid_request
from services.simulator.text import (
    REASONING_TOKENS,
    TEXT_FORMAT,
    Image,
    Message,
    OutputFormat,
    Prompt,
    Tool,
    ToolCall,
)

Body = Mapping[str, object]

_TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})
_RESPONSES_ROLES = ("user", "assistant", "system", "developer")
_CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_DETAILS = ("auto", "low", "high")
_TOOL_CHOICES = ("none", "auto", "required")
_FORMAT_KINDS = ("text", "json_object", "json_schema")
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


async def read_json(request: web.Request) -> Body:
    """Return the JSON object in the request body."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely "
            "means you aren't using your HTTP library correctly. The OpenAI API "
            "expects a JSON payload, but what was sent was not valid JSON.)"
        )
    return data


def required_str(body: Body, key: str, *, prefix: str = "") -> str:
    """Return the non-empty string ``body[key]``; ``prefix`` is ``body``'s path."""
    param = f"{prefix}.{key}" if prefix else key
    value = body.get(key)
    if value is None:
        raise _missing(param)
    if not isinstance(value, str) or not value:
        raise _invalid_type(param, "a non-empty string")
    return value


def optional_str(body: Body, key: str) -> str | None:
    """Return the string ``body[key]``, or None when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid_type(key, "a string")
    return value


def optional_int(body: Body, key: str, *, minimum: int, maximum: int) -> int | None:
    """Return the integer ``body[key]`` within bounds, or None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(key, "an integer")
    if not minimum <= value <= maximum:
        raise invalid_request(
            f"Invalid '{key}': expected a value between {minimum} and {maximum}, "
            f"but got {value} instead.",
            param=key,
            code="integer_out_of_range",
        )
    return value


def optional_number(
    body: Body, key: str, *, minimum: float, maximum: float
) -> float | None:
    """Return the number ``body[key]`` within bounds, or None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_type(key, "a number")
    if not minimum <= value <= maximum:
        raise invalid_request(
            f"Invalid '{key}': expected a value between {minimum} and {maximum}, "
            f"but got {value} instead.",
            param=key,
            code="decimal_out_of_range",
        )
    return float(value)


def optional_bool(body: Body, key: str) -> bool:
    """Return the boolean ``body[key]``; absent or null is False."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid_type(key, "a boolean")
    return value


def optional_object(body: Body, key: str) -> Body | None:
    """Return the JSON object ``body[key]``, or None when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid_type(key, "an object")
    return value


def metadata(body: Body) -> dict[str, str] | None:
    """Return the ``metadata`` map (string values, as OpenAI requires)."""
    value = optional_object(body, "metadata")
    if value is None:
        return None
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise _invalid_type(f"metadata.{key}", "a string")
        result[key] = item
    return result


def responses_prompt(body: Body) -> Prompt:
    """Return the conversation, tools, format and reasoning of a Responses body."""
    messages = responses_messages(body)
    tools = _tools(body, chat=False)
    choice, forced = _tool_choice(body, tools, chat=False)
    text = optional_object(body, "text") or {}
    fmt = _output_format(optional_object(text, "format"), "text.format", chat=False)
    _require_json_word(messages, fmt, chat=False)
    reasoning = optional_object(body, "reasoning") or {}
    return Prompt(
        messages=tuple(messages),
        tools=tools,
        tool_choice=choice,
        forced_tool=forced,
        parallel_tool_calls=_parallel_tool_calls(body),
        output_format=fmt,
        reasoning_effort=_effort(reasoning, "effort", "reasoning.effort"),
    )


def chat_prompt(body: Body) -> Prompt:
    """Return the conversation, tools, format and reasoning of a Chat body."""
    messages = chat_messages(body)
    tools = _tools(body, chat=True)
    choice, forced = _tool_choice(body, tools, chat=True)
    fmt = _output_format(
        optional_object(body, "response_format"), "response_format", chat=True
    )
    _require_json_word(messages, fmt, chat=True)
    return Prompt(
        messages=tuple(messages),
        tools=tools,
        tool_choice=choice,
        forced_tool=forced,
        parallel_tool_calls=_parallel_tool_calls(body),
        output_format=fmt,
        reasoning_effort=_effort(body, "reasoning_effort", "reasoning_effort"),
    )


def responses_messages(body: Body) -> list[Message]:
    """Return ``instructions`` (as a system message) and ``input`` as messages.

    Consecutive ``function_call`` items form one assistant turn. A
    ``function_call_output`` must answer an earlier ``function_call``.
    """
    messages: list[Message] = []
    instructions = optional_str(body, "instructions")
    if instructions is not None:
        messages.append(Message("system", instructions))
    value = body.get("input")
    if value is None:
        raise invalid_request(
            "Missing required parameter: 'input'.",
            param="input",
            code="missing_required_parameter",
        )
    if isinstance(value, str):
        messages.append(Message("user", value))
        return messages
    if not isinstance(value, list) or not value:
        raise _invalid_type("input", "a string or a non-empty array of input items")
    calls: list[ToolCall] = []
    known_calls: set[str] = set()
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if isinstance(item, dict) and item.get("type") == "function_call":
            call = _function_call(item, param)
            calls.append(call)
            known_calls.add(call.call_id)
            continue
        if calls:
            messages.append(Message("assistant", "", tool_calls=tuple(calls)))
            calls = []
        if isinstance(item, dict) and item.get("type") == "reasoning":
            continue  # a previous turn's reasoning, passed back: no visible text
        message = _input_item(item, param)
        if message.role == "tool" and message.call_id not in known_calls:
            raise invalid_request(
                "No tool call found for function call output with call_id "
                f"{message.call_id}.",
                param=param,
            )
        messages.append(message)
    if calls:
        messages.append(Message("assistant", "", tool_calls=tuple(calls)))
    return messages


def chat_messages(body: Body) -> list[Message]:
    """Return the ``messages`` of a Chat Completions request.

    A ``tool`` message must answer a call of an earlier assistant turn.
    """
    value = body.get("messages")
    if value is None:
        raise invalid_request(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(value, list) or not value:
        raise _invalid_type("messages", "a non-empty array of messages")
    messages: list[Message] = []
    known_calls: set[str] = set()
    for index, item in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(item, dict):
            raise _invalid_type(param, "an object")
        role = item.get("role")
        if not isinstance(role, str) or not role:
            raise invalid_request(
                f"Missing required parameter: '{param}.role'.",
                param=f"{param}.role",
                code="missing_required_parameter",
            )
        _check_role(role, _CHAT_ROLES, f"{param}.role")
        text, parts, images = _content(item.get("content"), param, chat=True)
        if role == "assistant":
            calls = _chat_tool_calls(item.get("tool_calls"), f"{param}.tool_calls")
            known_calls.update(call.call_id for call in calls)
            messages.append(Message(role, text, parts, images, tool_calls=calls))
        elif role == "tool":
            call_id = required_str(item, "tool_call_id", prefix=param)
            if call_id not in known_calls:
                raise invalid_request(
                    "Invalid parameter: messages with role 'tool' must be a response "
                    "to a preceding message with 'tool_calls'.",
                    param=param,
                )
            messages.append(Message(role, text, parts, images, call_id=call_id))
        else:
            messages.append(Message(role, text, parts, images))
    return messages


def embedding_inputs(body: Body) -> list[str | list[int]]:
    """Return the ``input`` of an Embeddings request as texts or token-id lists."""
    value = body.get("input")
    if value is None:
        raise invalid_request(
            "Missing required parameter: 'input'.",
            param="input",
            code="missing_required_parameter",
        )
    if not isinstance(value, str | list) or not value:
        raise _invalid_type("input", "a string or a non-empty array")
    # One text or one token-id array is a single input; any other array is a batch.
    single = isinstance(value, str) or all(_is_int(v) for v in value)
    items: list[object] = [value] if single else list(value)
    if len(items) > 2048:
        raise invalid_request(
            "'input' : maximum 2048 items per request.", param="input"
        )
    result: list[str | list[int]] = []
    for item in items:
        if isinstance(item, str) and item:
            result.append(item)
        elif isinstance(item, list) and item and all(_is_int(v) for v in item):
            result.append([v for v in item if isinstance(v, int)])
        else:
            raise invalid_request(
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param="input",
            )
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _input_item(item: object, param: str) -> Message:
    if isinstance(item, str):
        return Message("user", item)
    if not isinstance(item, dict):
        raise _invalid_type(param, "an object")
    role = item.get("role")
    if isinstance(role, str) and role:
        _check_role(role, _RESPONSES_ROLES, f"{param}.role")
        text, parts, images = _content(item.get("content"), param, chat=False)
        return Message(role, text, parts, images)
    kind = item.get("type")
    if kind == "function_call_output":
        call_id = required_str(item, "call_id", prefix=param)
        output = item.get("output")
        if output is None:
            raise invalid_request(
                f"Missing required parameter: '{param}.output'.",
                param=f"{param}.output",
                code="missing_required_parameter",
            )
        text, parts, images = _content(output, param, chat=False, key="output")
        return Message("tool", text, parts, images, call_id=call_id)
    if isinstance(kind, str) and kind and kind != "message":
        return Message(kind, "")
    raise invalid_request(
        f"Missing required parameter: '{param}.role'.",
        param=f"{param}.role",
        code="missing_required_parameter",
    )


def _function_call(item: Body, param: str) -> ToolCall:
    return ToolCall(
        call_id=required_str(item, "call_id", prefix=param),
        name=required_str(item, "name", prefix=param),
        arguments=_required_text(item, "arguments", param),
    )


def _chat_tool_calls(value: object, param: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid_type(param, "an array of tool calls")
    calls: list[ToolCall] = []
    for index, raw in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(raw, dict):
            raise _invalid_type(where, "an object")
        function = raw.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{where}.function")
        calls.append(
            ToolCall(
                call_id=required_str(raw, "id", prefix=where),
                name=required_str(function, "name", prefix=f"{where}.function"),
                arguments=_required_text(function, "arguments", f"{where}.function"),
            )
        )
    return tuple(calls)


def _content(
    content: object, param: str, *, chat: bool, key: str = "content"
) -> tuple[str, tuple[str, ...] | None, tuple[Image, ...]]:
    """The joined text, the text parts (None for a plain string) and the images."""
    if content is None or isinstance(content, str):
        return content or "", None, ()
    if not isinstance(content, list):
        raise _invalid_type(f"{param}.{key}", "a string or an array of parts")
    texts: list[str] = []
    images: list[Image] = []
    for index, part in enumerate(content):
        where = f"{param}.{key}[{index}]"
        if not isinstance(part, dict):
            raise _invalid_type(where, "an object")
        kind = part.get("type")
        if kind in _TEXT_PART_TYPES:
            texts.append(_required_text(part, "text", where))
        elif kind == "refusal":
            texts.append(_required_text(part, "refusal", where))
        elif kind == "image_url" and chat:
            images.append(_chat_image(part, where))
        elif kind == "input_image" and not chat:
            images.append(_responses_image(part, where))
        # Files and audio are accepted but, having no text, cost nothing here.
    return "\n".join(texts), tuple(texts), tuple(images)


def _chat_image(part: Body, param: str) -> Image:
    where = f"{param}.image_url"
    value = part.get("image_url")
    if isinstance(value, str):
        return _image(value, "auto", where)
    if not isinstance(value, dict):
        raise _missing(where)
    url = required_str(value, "url", prefix=where)
    return _image(url, _detail(value, where), f"{where}.url")


def _responses_image(part: Body, param: str) -> Image:
    detail = _detail(part, param)
    url = optional_str(part, "image_url")
    if url is None:
        if optional_str(part, "file_id") is None:
            raise _missing(f"{param}.image_url")
        # An uploaded file: nothing reads its header, so its size is unknown.
        return Image("file:", detail)
    return _image(url, detail, f"{param}.image_url")


def _image(url: str, detail: str, param: str) -> Image:
    lowered = url[:16].lower()
    if not (lowered.startswith("https://") or lowered.startswith("data:image/")):
        raise invalid_request(
            f"Invalid '{param}': expected an https URL or a data URL of an image "
            "('data:image/...;base64,...').",
            param=param,
            code="invalid_image_url",
        )
    return Image(url, detail)


def _detail(part: Body, param: str) -> str:
    detail = optional_str(part, "detail") or "auto"
    if detail not in _DETAILS:
        raise _invalid_value(f"{param}.detail", detail, _DETAILS)
    return detail


def _check_role(role: str, allowed: tuple[str, ...], param: str) -> None:
    if role not in allowed:
        raise _invalid_value(param, role, allowed)


def _tools(body: Body, *, chat: bool) -> tuple[Tool, ...]:
    value = body.get("tools")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid_type("tools", "an array of tools")
    tools: list[Tool] = []
    for index, raw in enumerate(value):
        param = f"tools[{index}]"
        if not isinstance(raw, dict):
            raise _invalid_type(param, "an object")
        if raw.get("type") != "function":
            continue  # hosted tools (web search, files...) are accepted, never called
        spec: Body = raw
        if chat:
            function = raw.get("function")
            if not isinstance(function, dict):
                raise _missing(f"{param}.function")
            spec, param = function, f"{param}.function"
        name = _name(spec, param)
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _invalid_type(f"{param}.strict", "a boolean")
        tools.append(
            Tool(
                name=name,
                description=optional_str(spec, "description") or "",
                parameters=optional_object(spec, "parameters"),
                # The Responses API makes function tools strict unless told not to.
                strict=(not chat) if strict is None else strict,
            )
        )
    return tuple(tools)


def _tool_choice(
    body: Body, tools: tuple[Tool, ...], *, chat: bool
) -> tuple[str, str | None]:
    """``(choice, forced function)``; choice is auto, none, required or function."""
    value = body.get("tool_choice")
    if value is None:
        return "auto", None
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise _invalid_value("tool_choice", value, _TOOL_CHOICES)
        if value == "required" and not tools:
            raise _tool_choice_without_tools()
        return value, None
    if not isinstance(value, dict):
        raise _invalid_type("tool_choice", "a string or an object")
    if value.get("type") != "function":
        return "auto", None  # allowed_tools, hosted tools: the model decides
    function = value.get("function")
    if chat and isinstance(function, dict):
        name = required_str(function, "name", prefix="tool_choice.function")
    else:
        name = required_str(value, "name", prefix="tool_choice")
    if not tools:
        raise _tool_choice_without_tools()
    if name not in {tool.name for tool in tools}:
        raise invalid_request(
            f"Tool choice 'function' with name '{name}' not found in 'tools' "
            "parameter.",
            param="tool_choice",
        )
    return "function", name


def _tool_choice_without_tools() -> ApiError:
    return invalid_request(
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
        "'tools' are specified.",
        param="tool_choice",
    )


def _parallel_tool_calls(body: Body) -> bool:
    if body.get("parallel_tool_calls") is None:
        return True
    return optional_bool(body, "parallel_tool_calls")


def _output_format(spec: Body | None, param: str, *, chat: bool) -> OutputFormat:
    if spec is None:
        return TEXT_FORMAT
    kind = spec.get("type")
    if kind is None:
        raise _missing(f"{param}.type")
    if not isinstance(kind, str) or kind not in _FORMAT_KINDS:
        raise _invalid_value(f"{param}.type", str(kind), _FORMAT_KINDS)
    if kind != "json_schema":
        return OutputFormat(kind)
    where = param
    if chat:
        inner = spec.get("json_schema")
        if not isinstance(inner, dict):
            raise _missing(f"{param}.json_schema")
        spec, where = inner, f"{param}.json_schema"
    name = _name(spec, where)
    schema = optional_object(spec, "schema")
    if schema is None and not chat:
        raise _missing(f"{where}.schema")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _invalid_type(f"{where}.strict", "a boolean")
    return OutputFormat(
        kind="json_schema",
        name=name,
        schema=schema,
        strict=strict is True,
        description=optional_str(spec, "description"),
    )


def _name(spec: Body, param: str) -> str:
    name = required_str(spec, "name", prefix=param)
    if not _NAME_RE.match(name):
        raise invalid_request(
            f"Invalid '{param}.name': string does not match pattern. Expected a "
            "string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
            param=f"{param}.name",
            code="invalid_value",
        )
    return name


def _require_json_word(
    messages: list[Message], fmt: OutputFormat, *, chat: bool
) -> None:
    if fmt.kind != "json_object" or any("json" in m.text.lower() for m in messages):
        return
    if chat:
        raise invalid_request(
            "'messages' must contain the word 'json' in some form, to use "
            "'response_format' of type 'json_object'.",
            param="messages",
        )
    raise invalid_request(
        "Response input messages must contain the word 'json' in some form to use "
        "'text.format' of type 'json_object'.",
        param="input",
    )


def _effort(body: Body, key: str, param: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in REASONING_TOKENS:
        raise _invalid_value(param, str(value), tuple(REASONING_TOKENS))
    return value


def _required_text(body: Body, key: str, param: str) -> str:
    """The string ``body[key]`` (may be empty); ``param`` is ``body``'s path."""
    value = body.get(key)
    if value is None:
        raise _missing(f"{param}.{key}")
    if not isinstance(value, str):
        raise _invalid_type(f"{param}.{key}", "a string")
    return value


def _missing(param: str) -> ApiError:
    return invalid_request(
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid_value(param: str, value: str, allowed: tuple[str, ...]) -> ApiError:
    supported = ", ".join(f"'{v}'" for v in allowed)
    return invalid_request(
        f"Invalid value: '{value}'. Supported values are: {supported}.",
        param=param,
        code="invalid_value",
    )


def _invalid_type(param: str, expected: str) -> ApiError:
    return invalid_request(
        f"Invalid type for '{param}': expected {expected}.",
        param=param,
        code="invalid_type",
    )


def query_limit(
    query: Mapping[str, str], *, default: int, maximum: int = 10_000
) -> int:
    """Return the ``limit`` query parameter of a list endpoint (1..``maximum``)."""
    raw = query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid_type("limit", "an integer") from None
    if not 1 <= value <= maximum:
        raise invalid_request(
            f"Invalid 'limit': expected a value between 1 and {maximum}, "
            f"but got {value} instead.",
            param="limit",
            code="integer_out_of_range",
        )
    return value


def cursor_page(
    objects: list[dict[str, object]], *, after: str | None, limit: int
) -> dict[str, object]:
    """Return OpenAI's cursor page of ``objects`` after the one whose id is ``after``.

    The objects are in listing order; an unknown ``after`` gives an empty page.
    """
    start = 0
    if after is not None:
        ids = [item["id"] for item in objects]
        start = ids.index(after) + 1 if after in ids else len(objects)
    data = objects[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(objects),
    }
