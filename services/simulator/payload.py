"""Typed reading and validation of request bodies.

Every helper raises :class:`~services.simulator.errors.ApiError` (400) with the
offending ``param``, in OpenAI's wording where it is known.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from services.simulator.errors import ApiError, invalid_request
from services.simulator.text import Message

Body = Mapping[str, object]

_TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})


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


def required_str(body: Body, key: str) -> str:
    """Return the non-empty string ``body[key]``."""
    value = body.get(key)
    if value is None:
        raise invalid_request(
            f"Missing required parameter: '{key}'.",
            param=key,
            code="missing_required_parameter",
        )
    if not isinstance(value, str) or not value:
        raise _invalid_type(key, "a non-empty string")
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


def responses_messages(body: Body) -> list[Message]:
    """Return ``instructions`` (as a developer message) and ``input`` as messages."""
    messages: list[Message] = []
    instructions = optional_str(body, "instructions")
    if instructions is not None:
        messages.append(Message("developer", instructions))
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
    for index, item in enumerate(value):
        messages.append(_input_item(item, f"input[{index}]"))
    return messages


def chat_messages(body: Body) -> list[Message]:
    """Return the ``messages`` of a Chat Completions request."""
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
        messages.append(Message(role, _content_text(item.get("content"), param)))
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
        return Message(role, _content_text(item.get("content"), param))
    # Tool results and similar items carry their text in ``output``.
    output = item.get("output")
    if isinstance(output, str):
        return Message("tool", output)
    kind = item.get("type")
    if isinstance(kind, str) and kind:
        return Message(kind, "")
    raise invalid_request(
        f"Missing required parameter: '{param}.role'.",
        param=f"{param}.role",
        code="missing_required_parameter",
    )


def _content_text(content: object, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _invalid_type(f"{param}.content", "a string or an array of parts")
    texts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise _invalid_type(f"{param}.content[{index}]", "an object")
        text = part.get("text")
        # Images, files and audio are accepted but, having no text, cost nothing here.
        if part.get("type") in _TEXT_PART_TYPES and isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)


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
