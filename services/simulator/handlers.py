"""The OpenAI endpoints: Responses, Chat Completions, Embeddings and Models.

Each handler receives an :class:`ApiCall` whose body is already parsed, whose
request is authenticated and counted, and whose fault (if any) other than a
broken stream has already been applied by the application.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog
from aiohttp import web

from services.core.tokens import count_tokens_batch
from services.simulator import payload, vectors
from services.simulator.errors import ApiError, invalid_request
from services.simulator.reply import argument_fragments, compose_answer
from services.simulator.sse import DONE, encode_event, start_stream
from services.simulator.state import SimulatorState
from services.simulator.text import (
    Answer,
    OutputFormat,
    Prompt,
    count_input_tokens,
    request_seed,
    split_deltas,
)

MODELS: tuple[str, ...] = (
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
"""Models listed by ``GET /v1/models``; requests may name any model."""

_MODEL_CREATED = 1_744_316_542  # fixed, so that listings are reproducible
_MAX_TOKENS_LIMIT = 1_000_000
_BROKEN_STREAM_DELTAS = 3

_log = structlog.get_logger("tollgate.simulator")


@dataclass
class ApiCall:
    """One authenticated, counted API request."""

    request: web.Request
    request_id: str
    body: payload.Body
    state: SimulatorState
    broken_stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0


Handler = Callable[[ApiCall], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PreparedResponse:
    """A ``/v1/responses`` answer, computed but not yet sent."""

    body: payload.Body
    model: str
    prompt: Prompt
    answer: Answer
    input_tokens: int
    cached_input_tokens: int
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    metadata: dict[str, str]
    stream: bool
    response_id: str
    item_id: str
    call_item_ids: tuple[str, ...]
    """The ids of the ``function_call`` items, one per tool call."""
    created_at: int

    @property
    def final_status(self) -> str:
        """``incomplete`` if the token cap cut the answer, else ``completed``."""
        return "incomplete" if self.answer.truncated else "completed"

    def part(self, text: str) -> dict[str, object]:
        """The output text content part holding ``text``."""
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def done_item(self) -> dict[str, object]:
        """The finished output message."""
        return {
            "id": self.item_id,
            "type": "message",
            "status": self.final_status,
            "role": "assistant",
            "content": [self.part(self.answer.text)],
        }

    def call_item(self, index: int, *, done: bool = True) -> dict[str, object]:
        """The ``function_call`` output item of tool call ``index``."""
        call = self.answer.tool_calls[index]
        return {
            "id": self.call_item_ids[index],
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments if done else "",
        }

    def done_items(self) -> list[object]:
        """Every finished output item: the tool calls, or the message."""
        if self.answer.tool_calls:
            return [self.call_item(i) for i in range(len(self.answer.tool_calls))]
        return [self.done_item()]

    def snapshot(
        self, status: str, output: list[object], *, final: bool
    ) -> dict[str, object]:
        """The Response object in ``status`` with ``output``."""
        truncated = final and self.answer.truncated
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if final else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if truncated
            else None,
            "instructions": payload.optional_str(self.body, "instructions"),
            "max_output_tokens": self.max_output_tokens,
            "max_tool_calls": None,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.prompt.parallel_tool_calls,
            "previous_response_id": None,
            "reasoning": {"effort": self.prompt.reasoning_effort, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "text": {
                "format": _format_echo(self.prompt.output_format),
                "verbosity": "medium",
            },
            "tool_choice": _tool_choice_echo(self.prompt),
            "tools": [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description or None,
                    "parameters": tool.parameters,
                    "strict": tool.strict,
                }
                for tool in self.prompt.tools
            ],
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "truncation": "disabled",
            "usage": (
                _responses_usage(
                    self.input_tokens,
                    self.answer.output_tokens,
                    self.cached_input_tokens,
                    self.answer.reasoning_tokens,
                )
                if final
                else None
            ),
            "user": None,
            "metadata": self.metadata,
        }

    def final(self) -> dict[str, object]:
        """The finished Response object, as a non-streamed answer returns it."""
        return self.snapshot(self.final_status, self.done_items(), final=True)


def prepare_response(state: SimulatorState, body: payload.Body) -> PreparedResponse:
    """Validate a ``/v1/responses`` body and compute its answer.

    Raises:
        ApiError: the body is invalid (400, with the offending ``param``).
    """
    model = payload.required_str(body, "model")
    prompt = payload.responses_prompt(body)
    messages = list(prompt.messages)
    max_output_tokens = payload.optional_int(
        body, "max_output_tokens", minimum=1, maximum=_MAX_TOKENS_LIMIT
    )
    temperature = payload.optional_number(body, "temperature", minimum=0, maximum=2)
    top_p = payload.optional_number(body, "top_p", minimum=0, maximum=1)
    metadata = payload.metadata(body) or {}
    stream = payload.optional_bool(body, "stream")
    answer, input_tokens = _answer(state, model, prompt, max_output_tokens)
    prompt_cache_key = payload.optional_str(body, "prompt_cache_key") or ""
    return PreparedResponse(
        body=body,
        model=model,
        prompt=prompt,
        answer=answer,
        input_tokens=input_tokens,
        cached_input_tokens=state.prompt_cache.cached_tokens(
            messages, prompt_cache_key
        ),
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        top_p=top_p,
        metadata=metadata,
        stream=stream,
        response_id="resp_" + secrets.token_hex(24),
        item_id="msg_" + secrets.token_hex(24),
        call_item_ids=tuple("fc_" + secrets.token_hex(24) for _ in answer.tool_calls),
        created_at=int(time.time()),
    )


async def _stream_function_calls(
    call: ApiCall, prepared: PreparedResponse, writer: _EventWriter
) -> web.StreamResponse:
    """Stream the ``function_call`` items: each added, its arguments, done."""
    opening = writer.flush()
    events: list[bytes] = []
    for index, tool_call in enumerate(prepared.answer.tool_calls):
        where = {"item_id": prepared.call_item_ids[index], "output_index": index}
        events.append(
            writer.encode(
                "response.output_item.added",
                output_index=index,
                item=prepared.call_item(index, done=False),
            )
        )
        events.extend(
            writer.encode("response.function_call_arguments.delta", **where, delta=d)
            for d in argument_fragments(tool_call.arguments)
        )
        events.append(
            writer.encode(
                "response.function_call_arguments.done",
                **where,
                arguments=tool_call.arguments,
            )
        )
        events.append(
            writer.encode(
                "response.output_item.done",
                output_index=index,
                item=prepared.call_item(index),
            )
        )
    writer.add(f"response.{prepared.final_status}", response=prepared.final())
    return await _stream(call, opening, events, writer.flush())


async def create_response(call: ApiCall) -> web.StreamResponse:
    """Serve ``POST /v1/responses``."""
    prepared = prepare_response(call.state, call.body)
    call.input_tokens = prepared.input_tokens
    call.output_tokens = prepared.answer.output_tokens
    if not prepared.stream:
        await _wait_whole_answer(call)
        return web.json_response(prepared.final(), headers=_headers(call))

    answer = prepared.answer
    final_status = prepared.final_status
    done_item = prepared.done_item()
    writer = _EventWriter()
    started = prepared.snapshot("in_progress", [], final=False)
    writer.add("response.created", response=started)
    writer.add("response.in_progress", response=started)
    if answer.tool_calls:
        return await _stream_function_calls(call, prepared, writer)
    in_progress_item = {**done_item, "status": "in_progress", "content": []}
    writer.add("response.output_item.added", output_index=0, item=in_progress_item)
    where = {"item_id": prepared.item_id, "output_index": 0, "content_index": 0}
    writer.add("response.content_part.added", **where, part=prepared.part(""))
    opening = writer.flush()
    deltas = [
        writer.encode("response.output_text.delta", **where, delta=delta, logprobs=[])
        for delta in split_deltas(answer.text)
    ]
    writer.add("response.output_text.done", **where, text=answer.text, logprobs=[])
    writer.add("response.content_part.done", **where, part=prepared.part(answer.text))
    writer.add("response.output_item.done", output_index=0, item=done_item)
    # A cut answer ends with response.incomplete, exactly as OpenAI does.
    writer.add(f"response.{final_status}", response=prepared.final())
    return await _stream(call, opening, deltas, writer.flush())


@dataclass(frozen=True)
class PreparedChat:
    """A ``/v1/chat/completions`` answer, computed but not yet sent."""

    model: str
    answer: Answer
    input_tokens: int
    stream: bool
    include_usage: bool
    completion_id: str
    created: int

    @property
    def finish_reason(self) -> str:
        """``tool_calls``, ``length`` for an answer cut by the limit, else ``stop``."""
        if self.answer.tool_calls:
            return "tool_calls"
        return "length" if self.answer.truncated else "stop"

    def common(self) -> dict[str, object]:
        """The fields every completion and chunk carries."""
        return {
            "id": self.completion_id,
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_simulator",
        }

    def usage(self) -> dict[str, object]:
        """The completion's usage object."""
        return _chat_usage(
            self.input_tokens, self.answer.output_tokens, self.answer.reasoning_tokens
        )

    def message(self) -> dict[str, object]:
        """The assistant message: text, or tool calls with null content."""
        calls = self.answer.tool_calls
        message: dict[str, object] = {
            "role": "assistant",
            "content": None if calls else self.answer.text,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        return message

    def final(self) -> dict[str, object]:
        """The non-streamed ChatCompletion object."""
        return {
            **self.common(),
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": self.message(),
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage(),
        }


def prepare_chat_completion(state: SimulatorState, body: payload.Body) -> PreparedChat:
    """Validate a ``/v1/chat/completions`` body and compute its answer.

    Raises:
        ApiError: the body is invalid (400, with the offending ``param``).
    """
    model = payload.required_str(body, "model")
    prompt = payload.chat_prompt(body)
    limits = [
        payload.optional_int(body, key, minimum=1, maximum=_MAX_TOKENS_LIMIT)
        for key in ("max_completion_tokens", "max_tokens")
    ]
    max_tokens = next((limit for limit in limits if limit is not None), None)
    payload.optional_number(body, "temperature", minimum=0, maximum=2)
    n = payload.optional_int(body, "n", minimum=1, maximum=128)
    if n is not None and n != 1:
        raise invalid_request("The simulator supports only n=1.", param="n")
    stream = payload.optional_bool(body, "stream")
    options = payload.optional_object(body, "stream_options") or {}
    include_usage = payload.optional_bool(options, "include_usage")
    answer, input_tokens = _answer(state, model, prompt, max_tokens)
    return PreparedChat(
        model=model,
        answer=answer,
        input_tokens=input_tokens,
        stream=stream,
        include_usage=include_usage,
        completion_id="chatcmpl-" + secrets.token_urlsafe(21).replace("-", "a")[:29],
        created=int(time.time()),
    )


async def create_chat_completion(call: ApiCall) -> web.StreamResponse:
    """Serve ``POST /v1/chat/completions``."""
    prepared = prepare_chat_completion(call.state, call.body)
    call.input_tokens = prepared.input_tokens
    call.output_tokens = prepared.answer.output_tokens
    if not prepared.stream:
        await _wait_whole_answer(call)
        return web.json_response(prepared.final(), headers=_headers(call))

    common = prepared.common()

    def chunk(delta: Mapping[str, object], finish: str | None) -> bytes:
        data: dict[str, object] = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if prepared.include_usage:
            data["usage"] = None
        return encode_event(data)

    if prepared.answer.tool_calls:
        opening, deltas = _tool_call_chunks(prepared, chunk)
    else:
        opening = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
        deltas = [
            chunk({"content": d}, None) for d in split_deltas(prepared.answer.text)
        ]
    closing = [chunk({}, prepared.finish_reason)]
    if prepared.include_usage:
        closing.append(
            encode_event(
                {
                    **common,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": prepared.usage(),
                }
            )
        )
    closing.append(DONE)
    return await _stream(call, opening, deltas, closing)


def _tool_call_chunks(
    prepared: PreparedChat, chunk: Callable[[Mapping[str, object], str | None], bytes]
) -> tuple[list[bytes], list[bytes]]:
    """The opening chunk and the deltas of streamed tool calls.

    Each call's first chunk carries its id, type and name; the next ones carry
    only its index and a fragment of its arguments.
    """
    chunks: list[bytes] = []
    for index, tool_call in enumerate(prepared.answer.tool_calls):
        head = {
            "index": index,
            "id": tool_call.call_id,
            "type": "function",
            "function": {"name": tool_call.name, "arguments": ""},
        }
        delta: dict[str, object] = {"tool_calls": [head]}
        if index == 0:
            delta = {"role": "assistant", "content": None, **delta, "refusal": None}
        chunks.append(chunk(delta, None))
        chunks.extend(
            chunk(
                {"tool_calls": [{"index": index, "function": {"arguments": part}}]},
                None,
            )
            for part in argument_fragments(tool_call.arguments)
        )
    return chunks[:1], chunks[1:]


async def create_embeddings(call: ApiCall) -> web.StreamResponse:
    """Serve ``POST /v1/embeddings``."""
    body = call.body
    model = payload.required_str(body, "model")
    inputs = payload.embedding_inputs(body)
    dimensions = payload.optional_int(
        body, "dimensions", minimum=1, maximum=vectors.MAX_DIMENSIONS
    )
    size = vectors.default_dimensions(model) if dimensions is None else dimensions
    encoding = payload.optional_str(body, "encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid_request(
            f"Invalid value for 'encoding_format': {encoding!r}; expected 'float' "
            "or 'base64'.",
            param="encoding_format",
        )
    texts = [item for item in inputs if isinstance(item, str)]
    call.input_tokens = sum(count_tokens_batch(texts) if texts else []) + sum(
        len(item) for item in inputs if not isinstance(item, str)
    )
    data: list[dict[str, object]] = []
    for index, item in enumerate(inputs):
        vector = vectors.embed(model, item, size)
        embedding: object = (
            vectors.encode_base64(vector) if encoding == "base64" else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    await call.state.sleep_ms(call.state.settings.latency_ms)
    result = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {
            "prompt_tokens": call.input_tokens,
            "total_tokens": call.input_tokens,
        },
    }
    return web.json_response(result, headers=_headers(call))


async def list_models(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/models``."""
    await call.state.sleep_ms(call.state.settings.latency_ms)
    listing = {"object": "list", "data": [_model(name) for name in MODELS]}
    return web.json_response(listing, headers=_headers(call))


async def retrieve_model(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/models/{model}``."""
    name = call.request.match_info["model"]
    await call.state.sleep_ms(call.state.settings.latency_ms)
    if name not in MODELS:
        raise ApiError(
            404,
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return web.json_response(_model(name), headers=_headers(call))


def _model(name: str) -> dict[str, object]:
    return {
        "id": name,
        "object": "model",
        "created": _MODEL_CREATED,
        "owned_by": "system",
    }


def _answer(
    state: SimulatorState,
    model: str,
    prompt: Prompt,
    max_tokens: int | None,
) -> tuple[Answer, int]:
    """The deterministic answer and the billed input tokens of a request."""
    seed = request_seed(
        model,
        prompt.messages,
        tools=prompt.tools,
        output_format=prompt.output_format,
    )
    answer = compose_answer(
        seed,
        prompt,
        max_natural_tokens=state.settings.default_max_output_tokens,
        max_output_tokens=max_tokens,
    )
    input_tokens = count_input_tokens(
        prompt.messages, prompt.tools, prompt.output_format
    )
    return answer, input_tokens


def _format_echo(fmt: OutputFormat) -> dict[str, object]:
    if fmt.kind != "json_schema":
        return {"type": fmt.kind}
    return {
        "type": "json_schema",
        "name": fmt.name,
        "schema": fmt.schema,
        "strict": fmt.strict,
        "description": fmt.description,
    }


def _tool_choice_echo(prompt: Prompt) -> object:
    if prompt.forced_tool is not None:
        return {"type": "function", "name": prompt.forced_tool}
    return prompt.tool_choice


def _responses_usage(
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> dict[str, object]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cached_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def _chat_usage(
    input_tokens: int, output_tokens: int, reasoning_tokens: int = 0
) -> dict[str, object]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _headers(call: ApiCall) -> dict[str, str]:
    return {"x-request-id": call.request_id}


async def _wait_whole_answer(call: ApiCall) -> None:
    settings = call.state.settings
    await call.state.sleep_ms(
        settings.latency_ms + settings.per_token_latency_ms * call.output_tokens
    )


async def _stream(
    call: ApiCall, opening: list[bytes], deltas: list[bytes], closing: list[bytes]
) -> web.StreamResponse:
    """Write a whole event stream, or cut it after a few deltas if it must break."""
    state = call.state
    state.stats.streams += 1
    await state.sleep_ms(state.settings.latency_ms)
    response = await start_stream(call.request, _headers(call))
    if call.broken_stream:
        deltas = deltas[: min(_BROKEN_STREAM_DELTAS, max(len(deltas) - 1, 0))]
    try:
        await response.write(b"".join(opening))
        for index, delta in enumerate(deltas):
            if index:
                await state.sleep_ms(state.settings.per_token_latency_ms)
            await response.write(delta)
        if call.broken_stream:
            # Close without the terminating chunk: the client reads a truncated
            # body, as when a connection to OpenAI drops mid-answer.
            if call.request.transport is not None:
                call.request.transport.close()
            return response
        await response.write(b"".join(closing))
        await response.write_eof()
    except ConnectionError:
        # The client went away mid-stream; aiohttp closes the connection.
        _log.info("sim_stream_client_gone", endpoint=call.request.path)
    return response


class _EventWriter:
    """Numbers Responses events in order and frames them."""

    def __init__(self) -> None:
        self._sequence = 0
        self._pending: list[bytes] = []

    def encode(self, event_type: str, **fields: object) -> bytes:
        data = {"type": event_type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode_event(data, event=event_type)

    def add(self, event_type: str, **fields: object) -> None:
        self._pending.append(self.encode(event_type, **fields))

    def flush(self) -> list[bytes]:
        pending, self._pending = self._pending, []
        return pending
