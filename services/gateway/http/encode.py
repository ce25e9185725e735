"""The gateway's answers in OpenAI's shapes: whole objects and SSE streams.

Chat Completions: a ``chat.completion`` object, or ``chat.completion.chunk``
events ended by ``data: [DONE]`` (with a usage chunk first when the caller asked
for ``stream_options.include_usage``). Responses: a ``response`` object, or the
Responses API's typed events (``response.created`` … ``response.completed``). A
stream that cannot complete ends with an error event and never with ``[DONE]``
or ``response.completed``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.core.conversation import FinishReason, ToolCall
from services.gateway.domain import (
    ResponseReply,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamStart,
    ToolCallDelta,
    Usage,
)
from services.gateway.http.errors import HttpError

DONE = b"data: [DONE]\n\n"


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event; Responses events carry an ``event:`` line too."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {_dumps(data)}\n\n".encode()


def _id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def chat_usage(usage: Usage) -> dict[str, Any]:
    """Chat Completions' usage object."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def responses_usage(usage: Usage) -> dict[str, Any]:
    """The Responses API's usage object."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _finish(
    reason: FinishReason | None, truncated: bool, tool_calls: tuple[ToolCall, ...]
) -> str:
    if reason is not None:
        return reason.value
    if tool_calls:
        return FinishReason.TOOL_CALLS.value
    return FinishReason.LENGTH.value if truncated else FinishReason.STOP.value


def _chat_calls(calls: Iterable[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def chat_completion(reply: ResponseReply) -> dict[str, Any]:
    """The ``chat.completion`` object of a whole answer."""
    return chat_completion_of(
        reply.output_text,
        reply.model,
        reply.usage,
        reply.tool_calls,
        reply.finish_reason,
        truncated=reply.output_truncated,
    )


def chat_completion_of(
    text: str,
    model: str,
    usage: Usage,
    tool_calls: tuple[ToolCall, ...],
    finish_reason: FinishReason | None,
    *,
    truncated: bool,
) -> dict[str, Any]:
    """The ``chat.completion`` object of an answer's parts."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = _chat_calls(tool_calls)
    return {
        "id": _id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(finish_reason, truncated, tool_calls),
            }
        ],
        "usage": chat_usage(usage),
        "service_tier": "default",
        "system_fingerprint": None,
    }


def _output_items(
    text: str, calls: Iterable[ToolCall], message_id: str, status: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {
            "id": _id("fc_"),
            "type": "function_call",
            "status": "completed",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }
        for call in calls
    ]
    if text or not items:
        items.insert(0, _message_item(message_id, text, status))
    return items


def _message_item(message_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)] if status != "in_progress" else [],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


@dataclass(frozen=True, slots=True)
class ResponseEcho:
    """What a Response object repeats of its request."""

    instructions: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    text_format: dict[str, Any] = field(default_factory=lambda: {"type": "text"})


def response_object(
    response_id: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    echo: ResponseEcho,
    created_at: int,
    *,
    truncated: bool = False,
) -> dict[str, Any]:
    """A ``response`` object in ``status`` holding ``output``."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0 if echo.temperature is None else echo.temperature,
        "text": {"format": echo.text_format},
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": 1.0 if echo.top_p is None else echo.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else responses_usage(usage),
        "user": None,
        "metadata": dict(echo.metadata),
    }


def response(reply: ResponseReply, echo: ResponseEcho) -> dict[str, Any]:
    """The ``response`` object of a whole answer."""
    return response_of(
        reply.output_text,
        reply.model,
        reply.usage,
        reply.tool_calls,
        truncated=reply.output_truncated,
        echo=echo,
    )


def response_of(
    text: str,
    model: str,
    usage: Usage,
    tool_calls: tuple[ToolCall, ...],
    *,
    truncated: bool,
    echo: ResponseEcho | None = None,
) -> dict[str, Any]:
    """The ``response`` object of an answer's parts."""
    status = "incomplete" if truncated else "completed"
    return response_object(
        _id("resp_"),
        model,
        status,
        _output_items(text, tool_calls, _id("msg_"), status),
        usage,
        echo or ResponseEcho(),
        int(time.time()),
        truncated=truncated,
    )


# -- streams


class ChatStream:
    """Turns stream events into ``chat.completion.chunk`` events."""

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._id = _id("chatcmpl-")
        self._created = int(time.time())
        self._model = ""
        self._opened = False
        self._tool_indexes: set[int] = set()

    def _chunk(
        self, delta: Mapping[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "service_tier": "default",
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def encode(self, event: StreamEvent) -> bytes:
        """The SSE bytes of one event (empty when it shows nothing)."""
        if isinstance(event, StreamStart):
            self._model = event.model
            return b""
        if isinstance(event, StreamDelta):
            return self._open() + (
                sse(self._chunk({"content": event.text})) if event.text else b""
            )
        if isinstance(event, ToolCallDelta):
            head = self._open()
            call: dict[str, Any] = {"index": event.index}
            if event.index not in self._tool_indexes:
                self._tool_indexes.add(event.index)
                call.update(id=event.id, type="function")
                call["function"] = {
                    "name": event.name,
                    "arguments": event.arguments_delta,
                }
            else:
                call["function"] = {"arguments": event.arguments_delta}
            return head + sse(self._chunk({"tool_calls": [call]}))
        return self._end(event)

    def _open(self) -> bytes:
        if self._opened:
            return b""
        self._opened = True
        return sse(self._chunk({"role": "assistant", "content": "", "refusal": None}))

    def _end(self, end: StreamEnd) -> bytes:
        finish = _finish(end.finish_reason, end.output_truncated, end.tool_calls)
        parts = [self._open(), sse(self._chunk({}, finish))]
        if self._include_usage:
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = chat_usage(end.usage)
            parts.append(sse(usage_chunk))
        parts.append(DONE)
        return b"".join(parts)

    def error(self, error: HttpError) -> bytes:
        """The event that ends a stream which cannot complete (no ``[DONE]``)."""
        return sse(error.body())


class ResponsesStream:
    """Turns stream events into the Responses API's typed events."""

    def __init__(self, echo: ResponseEcho) -> None:
        self._echo = echo
        self._sequence = 0
        self._id = _id("resp_")
        self._message_id = _id("msg_")
        self._created = int(time.time())
        self._model = ""
        self._text: list[str] = []
        self._message_open = False
        self._calls: dict[int, dict[str, Any]] = {}
        self._items = 0

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse(data, kind)

    def _snapshot(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: Usage | None,
        truncated: bool = False,
    ) -> dict[str, Any]:
        return response_object(
            self._id,
            self._model,
            status,
            output,
            usage,
            self._echo,
            self._created,
            truncated=truncated,
        )

    def encode(self, event: StreamEvent) -> bytes:
        """The SSE bytes of one event."""
        if isinstance(event, StreamStart):
            self._model = event.model
            snapshot = self._snapshot("in_progress", [], None)
            return self._event("response.created", response=snapshot) + self._event(
                "response.in_progress", response=snapshot
            )
        if isinstance(event, StreamDelta):
            if not event.text:
                return b""
            head = self._open_message()
            self._text.append(event.text)
            return head + self._event(
                "response.output_text.delta",
                item_id=self._message_id,
                output_index=0,
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        if isinstance(event, ToolCallDelta):
            return self._tool_delta(event)
        return self._end(event)

    def _open_message(self) -> bytes:
        if self._message_open:
            return b""
        self._message_open = True
        self._items += 1
        return self._event(
            "response.output_item.added",
            output_index=0,
            item=_message_item(self._message_id, "", "in_progress"),
        ) + self._event(
            "response.content_part.added",
            item_id=self._message_id,
            output_index=0,
            content_index=0,
            part=_text_part(""),
        )

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        out = b""
        call = self._calls.get(event.index)
        if call is None:
            call = {
                "id": _id("fc_"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": event.id,
                "name": event.name,
                "arguments": "",
                "output_index": self._items,
            }
            self._items += 1
            self._calls[event.index] = call
            item = {k: v for k, v in call.items() if k != "output_index"}
            out += self._event(
                "response.output_item.added",
                output_index=call["output_index"],
                item=item,
            )
        call["arguments"] += event.arguments_delta
        if event.arguments_delta:
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=call["id"],
                output_index=call["output_index"],
                delta=event.arguments_delta,
            )
        return out

    def _end(self, end: StreamEnd) -> bytes:
        status = "incomplete" if end.output_truncated else "completed"
        text = "".join(self._text)
        out = b""
        output: list[dict[str, Any]] = []
        if self._message_open or not self._calls:
            out += self._open_message()
            where = {"item_id": self._message_id, "output_index": 0, "content_index": 0}
            out += self._event(
                "response.output_text.done", **where, text=text, logprobs=[]
            )
            out += self._event(
                "response.content_part.done", **where, part=_text_part(text)
            )
            item = _message_item(self._message_id, text, status)
            out += self._event("response.output_item.done", output_index=0, item=item)
            output.append(item)
        for call in self._calls.values():
            index = call.pop("output_index")
            call["status"] = "completed"
            out += self._event(
                "response.function_call_arguments.done",
                item_id=call["id"],
                output_index=index,
                arguments=call["arguments"],
            )
            out += self._event(
                "response.output_item.done", output_index=index, item=call
            )
            output.append(call)
        snapshot = self._snapshot(status, output, end.usage, end.output_truncated)
        return out + self._event(f"response.{status}", response=snapshot)

    def error(self, error: HttpError) -> bytes:
        """The ``error`` event that ends a stream which cannot complete."""
        return self._event(
            "error", code=error.code, message=error.message, param=error.param
        )
