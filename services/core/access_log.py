"""The access log: one line per request at a front door, written when it ends.

A front (the gateway's RPC envelope, its HTTP door) opens a record when a request
arrives; the request's code fills in what it learns — who called, which model was
asked for and which answered, the cache status, tokens and cost — and the front
writes the line, event ``access`` at info level, with the final status and latency.
The record lives in a context variable, so nothing is threaded through calls, and a
line costs one dict and one JSON encoding per request.

Fields are ids, names and numbers: never prompts, answers or keys (the key's id
is a prefix of its SHA-256 digest, not the key).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import structlog

_log = structlog.get_logger("tollgate.access")


@dataclass(slots=True)
class AccessRecord:
    """What one request did, filled in as it runs.

    Attributes:
        tenant: the caller's tenant ("" until authenticated).
        key_id: the public id of the caller's API key, never the key.
        user: the end user the request is booked to.
        model_requested: the model the caller named ("auto": the router's choice).
        model: the model that answered (or would have: a static answer's route).
        cache_status: miss, exact, semantic or skipped; "" without an answer.
        input_tokens: prompt tokens of the answer (0 for cache hits and errors).
        output_tokens: completion tokens of the answer.
        cost_micros: what the ledger booked, in micro-dollars.
        reason: the error's stable UPPER_SNAKE reason, when the request failed.
    """

    tenant: str = ""
    key_id: str = ""
    user: str = ""
    model_requested: str = ""
    model: str = ""
    cache_status: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    reason: str = ""


_current: ContextVar[AccessRecord | None] = ContextVar(
    "tollgate_access_record", default=None
)


def open_record() -> AccessRecord:
    """Start the record of the request being served (in this task's context)."""
    record = AccessRecord()
    _current.set(record)
    return record


def current() -> AccessRecord | None:
    """The record of the request being served, or None outside a logged front."""
    return _current.get()


def write(record: AccessRecord, latency_ms: float, **status: str | int) -> None:
    """Write the request's one access line; ``status`` is ``code=`` or ``status=``.

    The request id, RPC or route and the trace ids come from the log context.
    """
    fields: dict[str, str | int | float] = {
        "tenant": record.tenant,
        "key_id": record.key_id,
        "user": record.user,
        "model_requested": record.model_requested,
        "model": record.model,
        "cache_status": record.cache_status,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cost_micros": record.cost_micros,
        "latency_ms": round(latency_ms, 3),
        **status,
    }
    if record.reason:
        fields["reason"] = record.reason
    _log.info("access", **fields)
