"""The OpenAI Responses API's shapes: one request body and one answer reader.

The synchronous lane (``upstream.py``) and the Batch API lane (``batches.py``) both
send :func:`request_body` and read answers with :func:`read_answer`, so an item of a
batch reaches the model exactly as the same request sent alone would.

Messages become input items: text and image parts of system, developer and user
turns; an assistant turn's text, then one ``function_call`` item per tool call; a
tool turn becomes a ``function_call_output`` item. A schema travels as
``text.format``; tools, tool choice and parallel_tool_calls as OpenAI names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai.types.responses import Response

from services.core.conversation import (
    FinishReason,
    FormatKind,
    Message,
    Prompt,
    Role,
    ToolCall,
)
from services.gateway.domain import UpstreamAnswer, UpstreamCall, Usage


def _message_items(message: Message) -> list[dict[str, Any]]:
    if message.role is Role.TOOL:
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id,
                "output": message.text,
            }
        ]
    items: list[dict[str, Any]] = []
    if message.role is Role.ASSISTANT:
        if message.text:
            items.append({"role": "assistant", "content": message.text})
    elif message.content:
        parts: list[dict[str, Any]] = [
            {"type": "input_text", "text": part}
            if isinstance(part, str)
            else {
                "type": "input_image",
                "image_url": part.url,
                "detail": part.detail.value,
            }
            for part in message.content
        ]
        items.append({"role": message.role.value, "content": parts})
    items.extend(
        {
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }
        for call in message.tool_calls
    )
    return items


def input_items(prompt: Prompt) -> str | list[dict[str, Any]]:
    """The ``input`` of a Responses request: a string for one plain user message."""
    messages = prompt.messages
    if (
        len(messages) == 1
        and messages[0].role is Role.USER
        and len(messages[0].content) == 1
        and isinstance(messages[0].content[0], str)
    ):
        return messages[0].content[0]
    items: list[dict[str, Any]] = []
    for message in messages:
        items.extend(_message_items(message))
    return items


def request_body(call: UpstreamCall) -> dict[str, Any]:
    """The Responses API body of ``call``.

    Stable instructions and tools come first and the conversation last, and the
    prompt cache key groups requests sharing a prefix, so that OpenAI's prompt cache
    applies.
    """
    prompt = call.prompt
    body: dict[str, Any] = {"model": call.model, "input": input_items(prompt)}
    if prompt.instructions:
        body["instructions"] = prompt.instructions
    if prompt.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters or {}),
                "strict": tool.strict,
            }
            for tool in prompt.tools
        ]
    choice = prompt.tool_choice
    if choice is not None:
        if choice.function:
            body["tool_choice"] = {"type": "function", "name": choice.function}
        elif choice.mode is not None:
            body["tool_choice"] = choice.mode.value
    if prompt.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = prompt.parallel_tool_calls
    fmt = prompt.response_format
    if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA:
        schema_format: dict[str, Any] = {
            "type": "json_schema",
            "name": fmt.name,
            "schema": dict(fmt.schema or {}),
            "strict": fmt.strict,
        }
        if fmt.description:
            schema_format["description"] = fmt.description
        body["text"] = {"format": schema_format}
    elif fmt is not None and fmt.kind is FormatKind.JSON_OBJECT:
        body["text"] = {"format": {"type": "json_object"}}
    if prompt.reasoning_effort is not None:
        body["reasoning"] = {"effort": prompt.reasoning_effort.value}
    if call.max_output_tokens:
        body["max_output_tokens"] = call.max_output_tokens
    if call.temperature is not None:
        body["temperature"] = call.temperature
    if call.top_p is not None:
        body["top_p"] = call.top_p
    if call.safety_identifier:
        body["safety_identifier"] = call.safety_identifier
    if call.prompt_cache_key:
        body["prompt_cache_key"] = call.prompt_cache_key
    return body


def _finish_reason(
    response: Response, tool_calls: tuple[ToolCall, ...]
) -> FinishReason:
    if response.status == "incomplete":
        details = response.incomplete_details
        if details is not None and details.reason == "content_filter":
            return FinishReason.CONTENT_FILTER
        return FinishReason.LENGTH
    return FinishReason.TOOL_CALLS if tool_calls else FinishReason.STOP


def _finish_reason_of(
    data: Mapping[str, Any], tool_calls: tuple[ToolCall, ...]
) -> FinishReason:
    if data.get("status") == "incomplete":
        details = data.get("incomplete_details") or {}
        if details.get("reason") == "content_filter":
            return FinishReason.CONTENT_FILTER
        return FinishReason.LENGTH
    return FinishReason.TOOL_CALLS if tool_calls else FinishReason.STOP


def read_answer_json(data: Mapping[str, Any]) -> UpstreamAnswer:
    """:func:`read_answer` of a Responses API response as decoded JSON.

    The same answer as the SDK's model would give, without building the model:
    the synchronous lane's hot path reads the body as sent.
    """
    output = data.get("output") or ()
    tool_calls = tuple(
        ToolCall(item["call_id"], item["name"], item["arguments"])
        for item in output
        if item.get("type") == "function_call"
    )
    texts = [
        part["text"]
        for item in output
        if item.get("type") == "message"
        for part in item.get("content") or ()
        if part.get("type") == "output_text" and part.get("text") is not None
    ]
    usage = data.get("usage") or {}
    finish = _finish_reason_of(data, tool_calls)
    return UpstreamAnswer(
        output_text="".join(texts),
        model=data["model"],
        usage=Usage(
            input_tokens=usage.get("input_tokens") or 0,
            cached_input_tokens=(usage.get("input_tokens_details") or {}).get(
                "cached_tokens"
            )
            or 0,
            output_tokens=usage.get("output_tokens") or 0,
            reasoning_tokens=(usage.get("output_tokens_details") or {}).get(
                "reasoning_tokens"
            )
            or 0,
        ),
        truncated=finish is FinishReason.LENGTH,
        tool_calls=tool_calls,
        finish_reason=finish,
    )


def read_answer(response: Response) -> UpstreamAnswer:
    """The answer of a Responses API response: text, tool calls, usage, finish."""
    tool_calls = tuple(
        ToolCall(item.call_id, item.name, item.arguments)
        for item in response.output
        if item.type == "function_call"
    )
    usage = response.usage
    finish = _finish_reason(response, tool_calls)
    return UpstreamAnswer(
        output_text=response.output_text,
        model=response.model,
        usage=Usage(
            input_tokens=usage.input_tokens if usage else 0,
            cached_input_tokens=(
                usage.input_tokens_details.cached_tokens if usage else 0
            ),
            output_tokens=usage.output_tokens if usage else 0,
            reasoning_tokens=(
                usage.output_tokens_details.reasoning_tokens if usage else 0
            ),
        ),
        truncated=finish is FinishReason.LENGTH,
        tool_calls=tool_calls,
        finish_reason=finish,
    )
