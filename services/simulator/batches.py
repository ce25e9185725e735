"""The Batches endpoints: create, retrieve, cancel and list, driven by the clock.

A batch's status follows from the time elapsed since its creation, measured on the
state's clock, over ``batch_completion_seconds`` (T): ``validating`` for the first
tenth of T, ``in_progress`` until nine tenths, ``finalizing`` until T, then
``completed``. A cancelled batch is ``cancelling`` for a tenth of T, then
``cancelled``. An input file that is not valid batch JSONL, or the batch metadata
``{"sim_fault": "batch_failed"}``, fails the batch when validation ends;
``{"sim_fault": "batch_expired"}`` makes it expire at T.

Each line is answered, once, when the batch ends, by the same code that serves
``/v1/responses`` and ``/v1/chat/completions``: the same deterministic text and
usage. A line fails (a 500 in the error file) when its body's metadata asks with
``{"sim_fault": "server_error"}`` (any fault kind works), or by the
``batch_failure_rate`` draw, which is a function of the seed and the custom_id.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from services.simulator import payload
from services.simulator.errors import ApiError, error_body, invalid_request
from services.simulator.faults import (
    Fault,
    FaultKind,
    UnknownFaultError,
    fault_error,
    parse_fault_kind,
)
from services.simulator.files import add_file, get_file
from services.simulator.handlers import (
    ApiCall,
    prepare_chat_completion,
    prepare_response,
)
from services.simulator.state import BatchLine, SimBatch, SimulatorState

MAX_REQUESTS = 50_000
"""Most requests one batch input file may hold, as at OpenAI."""

FAULT_METADATA_KEY = "sim_fault"
"""Metadata key (of a batch, or of a line's body) that asks for a fault."""

BATCH_FAULTS = {"batch_failed": "failed", "batch_expired": "expired"}
"""Whole-batch faults a batch's metadata may ask for, and the status they end in."""

_WINDOW_SECONDS = 24 * 3600
_MAX_LIST_LIMIT = 100
_MAX_REPORTED_ERRORS = 100
_ACTIVE = frozenset({"validating", "in_progress", "finalizing"})


@dataclass(frozen=True, slots=True)
class _LineAnswer:
    status_code: int
    body: dict[str, object]
    input_tokens: int = 0
    output_tokens: int = 0


def _answer_responses(state: SimulatorState, body: payload.Body) -> _LineAnswer:
    prepared = prepare_response(state, body)
    return _LineAnswer(
        200, prepared.final(), prepared.input_tokens, prepared.answer.output_tokens
    )


def _answer_chat(state: SimulatorState, body: payload.Body) -> _LineAnswer:
    prepared = prepare_chat_completion(state, body)
    return _LineAnswer(
        200, prepared.final(), prepared.input_tokens, prepared.answer.output_tokens
    )


_ENDPOINTS: dict[str, Callable[[SimulatorState, payload.Body], _LineAnswer]] = {
    "/v1/responses": _answer_responses,
    "/v1/chat/completions": _answer_chat,
}


def line_fails(seed: int, custom_id: str, rate: float) -> bool:
    """Whether the ``batch_failure_rate`` draw fails the line ``custom_id``."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{custom_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


async def create_batch(call: ApiCall) -> web.StreamResponse:
    """Serve ``POST /v1/batches``."""
    body = call.body
    state = call.state
    input_file_id = payload.required_str(body, "input_file_id")
    endpoint = payload.required_str(body, "endpoint")
    window = payload.required_str(body, "completion_window")
    metadata = payload.metadata(body)
    if endpoint not in _ENDPOINTS:
        allowed = ", ".join(f"'{e}'" for e in _ENDPOINTS)
        raise invalid_request(
            f"Invalid value for 'endpoint': the simulator supports {allowed}.",
            param="endpoint",
        )
    if window != "24h":
        raise invalid_request(
            "Invalid value for 'completion_window': only '24h' is supported.",
            param="completion_window",
        )
    outcome = "completed"
    requested = (metadata or {}).get(FAULT_METADATA_KEY)
    if requested is not None:
        if requested not in BATCH_FAULTS:
            allowed = ", ".join(f"'{f}'" for f in BATCH_FAULTS)
            raise invalid_request(
                f"Invalid value for 'metadata.{FAULT_METADATA_KEY}': expected "
                f"{allowed}.",
                param=f"metadata.{FAULT_METADATA_KEY}",
            )
        outcome = BATCH_FAULTS[requested]
    source = get_file(state, input_file_id, param="input_file_id")
    if source.purpose != "batch":
        raise invalid_request(
            f"File {input_file_id} was not uploaded with purpose 'batch'.",
            param="input_file_id",
        )
    lines, model, errors = _parse_input(source.content, endpoint)
    if outcome == "failed":
        errors.append(
            {
                "code": "batch_failed",
                "message": "The batch failed (simulated).",
                "param": None,
                "line": None,
            }
        )
        outcome = "completed"
    batch = SimBatch(
        id="batch_" + secrets.token_hex(16),
        endpoint=endpoint,
        input_file_id=input_file_id,
        completion_window=window,
        metadata=metadata,
        created_at=state.clock.now(),
        lines=lines,
        model=model,
        errors=errors,
        outcome=outcome,
    )
    state.batches[batch.id] = batch
    return web.json_response(_batch_json(state, batch))


async def retrieve_batch(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/batches/{batch_id}``."""
    batch = _get_batch(call.state, call.request.match_info["batch_id"])
    return web.json_response(_batch_json(call.state, batch))


async def cancel_batch(call: ApiCall) -> web.StreamResponse:
    """Serve ``POST /v1/batches/{batch_id}/cancel``."""
    state = call.state
    batch = _get_batch(state, call.request.match_info["batch_id"])
    status = _status(state, batch)
    if status not in _ACTIVE:
        raise invalid_request(
            f"Cannot cancel a batch with status '{status}'.", param="batch_id"
        )
    batch.cancelling_at = state.clock.now()
    return web.json_response(_batch_json(state, batch))


async def list_batches(call: ApiCall) -> web.StreamResponse:
    """Serve ``GET /v1/batches`` (``after``, ``limit``), newest first."""
    state = call.state
    query = call.request.query
    batches = [_batch_json(state, b) for b in reversed(state.batches.values())]
    page = payload.cursor_page(
        batches,
        after=query.get("after"),
        limit=payload.query_limit(query, default=20, maximum=_MAX_LIST_LIMIT),
    )
    return web.json_response(page)


def _get_batch(state: SimulatorState, batch_id: str) -> SimBatch:
    batch = state.batches.get(batch_id)
    if batch is None:
        raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


def _parse_input(
    content: bytes, endpoint: str
) -> tuple[list[BatchLine], str | None, list[dict[str, object]]]:
    """The valid lines of an input file, their one model, and every problem."""
    errors: list[dict[str, object]] = []

    def problem(
        code: str, message: str, line: int | None = None, param: str | None = None
    ) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": line})

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        problem("invalid_file", "The input file is not UTF-8 text.")
        return [], None, errors
    lines: list[BatchLine] = []
    seen: set[str] = set()
    models: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            problem("invalid_json_line", f"Line {number} is not a JSON object.", number)
            continue
        custom_id = data.get("custom_id")
        body = data.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            problem(
                "missing_required_parameter",
                f"Line {number} has no custom_id.",
                number,
                "custom_id",
            )
        elif custom_id in seen:
            problem(
                "duplicate_custom_id",
                f"The custom_id '{custom_id}' of line {number} is not unique.",
                number,
                "custom_id",
            )
        elif data.get("method") != "POST":
            problem(
                "invalid_method",
                f"Line {number}: the method must be 'POST'.",
                number,
                "method",
            )
        elif data.get("url") != endpoint:
            problem(
                "invalid_url",
                f"Line {number}: the url must be the batch endpoint '{endpoint}'.",
                number,
                "url",
            )
        elif not isinstance(body, dict) or not isinstance(body.get("model"), str):
            problem(
                "missing_required_parameter",
                f"Line {number} has no body with a model.",
                number,
                "body.model",
            )
        else:
            seen.add(custom_id)
            models.add(str(body["model"]))
            lines.append(BatchLine(custom_id, body))
    if not lines and not errors:
        problem("empty_file", "The input file holds no requests.")
    if len(lines) > MAX_REQUESTS:
        problem(
            "too_many_requests",
            f"A batch holds at most {MAX_REQUESTS} requests; this one has "
            f"{len(lines)}.",
        )
    if len(models) > 1:
        problem(
            "mismatched_model",
            "Every request of a batch must use the same model; found "
            f"{', '.join(sorted(models))}.",
            param="body.model",
        )
    model = next(iter(models)) if len(models) == 1 else None
    return lines, model, errors[:_MAX_REPORTED_ERRORS]


def _boundaries(state: SimulatorState, batch: SimBatch) -> tuple[float, float, float]:
    """When validation ends, finalizing starts and the batch ends."""
    span = state.settings.batch_completion_seconds
    start = batch.created_at
    return start + span / 10, start + span * 9 / 10, start + span


def _status(state: SimulatorState, batch: SimBatch) -> str:
    now = state.clock.now()
    validated, finalizing, end = _boundaries(state, batch)
    if batch.cancelling_at is not None:
        cancel_span = state.settings.batch_completion_seconds / 10
        return "cancelled" if now >= batch.cancelling_at + cancel_span else "cancelling"
    if now >= validated and batch.errors:
        return "failed"
    if now >= end:
        return batch.outcome
    if now >= finalizing:
        return "finalizing"
    return "in_progress" if now >= validated else "validating"


def _batch_json(state: SimulatorState, batch: SimBatch) -> dict[str, object]:
    """The OpenAI ``batch`` object, after settling a batch that has ended."""
    status = _status(state, batch)
    if status in ("completed", "expired", "cancelled") and not batch.finished:
        _finish(state, batch, status)
    validated, finalizing, end = _boundaries(state, batch)
    # Phases advance until the batch is cancelled, and not past a failed validation.
    stop = state.clock.now() if batch.cancelling_at is None else batch.cancelling_at

    def reached(moment: float) -> int | None:
        return int(moment) if stop >= moment and not batch.errors else None

    cancel_span = state.settings.batch_completion_seconds / 10
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": (
            {"object": "list", "data": batch.errors} if status == "failed" else None
        ),
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at),
        "in_progress_at": reached(validated),
        "expires_at": int(batch.created_at) + _WINDOW_SECONDS,
        "finalizing_at": reached(finalizing),
        "completed_at": reached(end) if batch.outcome == "completed" else None,
        "failed_at": int(validated) if status == "failed" else None,
        "expired_at": reached(end) if batch.outcome == "expired" else None,
        "cancelling_at": (
            None if batch.cancelling_at is None else int(batch.cancelling_at)
        ),
        "cancelled_at": (
            int(batch.cancelling_at + cancel_span)
            if status == "cancelled" and batch.cancelling_at is not None
            else None
        ),
        "request_counts": {
            "total": 0 if batch.errors else len(batch.lines),
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "usage": batch.usage,
        "metadata": batch.metadata,
    }


def _executed_lines(state: SimulatorState, batch: SimBatch, status: str) -> int:
    """How many lines ran before the batch ended in ``status``."""
    if status == "completed":
        return len(batch.lines)
    if status == "expired" or batch.cancelling_at is None:
        return 0
    validated, finalizing, _ = _boundaries(state, batch)
    if finalizing <= validated:
        return len(batch.lines)
    progress = (batch.cancelling_at - validated) / (finalizing - validated)
    return int(len(batch.lines) * min(1.0, max(0.0, progress)))


def _finish(state: SimulatorState, batch: SimBatch, status: str) -> None:
    """Answer the lines that ran and write the output and error files, once."""
    executed = _executed_lines(state, batch, status)
    outputs: list[bytes] = []
    failures: list[bytes] = []
    input_tokens = output_tokens = 0
    for line in batch.lines[:executed]:
        answer = _answer_line(state, batch.endpoint, line)
        record = {
            "id": "batch_req_" + secrets.token_hex(16),
            "custom_id": line.custom_id,
            "response": {
                "status_code": answer.status_code,
                "request_id": "req_" + secrets.token_hex(16),
                "body": answer.body,
            },
            "error": None,
        }
        if answer.status_code == 200:
            outputs.append(_jsonl(record))
            input_tokens += answer.input_tokens
            output_tokens += answer.output_tokens
        else:
            failures.append(_jsonl(record))
    code = "batch_expired" if status == "expired" else "batch_cancelled"
    message = (
        "This request could not be executed before the completion window expired."
        if status == "expired"
        else "This request was not executed because the batch was cancelled."
    )
    for line in batch.lines[executed:]:
        record = {
            "id": "batch_req_" + secrets.token_hex(16),
            "custom_id": line.custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
        failures.append(_jsonl(record))
    if outputs:
        name = f"{batch.id}_output.jsonl"
        stored = add_file(state, name, "batch_output", b"".join(outputs))
        batch.output_file_id = stored.id
    if failures:
        name = f"{batch.id}_error.jsonl"
        stored = add_file(state, name, "batch_output", b"".join(failures))
        batch.error_file_id = stored.id
    batch.completed = len(outputs)
    batch.failed = len(failures)
    batch.usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    state.stats.input_tokens += input_tokens
    state.stats.output_tokens += output_tokens
    batch.finished = True


def _answer_line(state: SimulatorState, endpoint: str, line: BatchLine) -> _LineAnswer:
    """One line's answer: the endpoint's own, or the error its fault causes."""
    try:
        fault = _line_fault(state, line)
        if fault is not None:
            state.stats.faults[fault.kind.value] += 1
            raise fault_error(fault)
        return _ENDPOINTS[endpoint](state, line.body)
    except ApiError as err:
        return _LineAnswer(err.status, error_body(err))


def _line_fault(state: SimulatorState, line: BatchLine) -> Fault | None:
    settings = state.settings
    meta = line.body.get("metadata")
    name = meta.get(FAULT_METADATA_KEY) if isinstance(meta, dict) else None
    if isinstance(name, str):
        try:
            return Fault(parse_fault_kind(name), settings.retry_after_seconds)
        except UnknownFaultError as err:
            raise invalid_request(
                str(err), param=f"metadata.{FAULT_METADATA_KEY}"
            ) from None
    if line_fails(settings.seed, line.custom_id, settings.batch_failure_rate):
        return Fault(FaultKind.SERVER_ERROR, settings.retry_after_seconds)
    return None


def _jsonl(record: Mapping[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"
