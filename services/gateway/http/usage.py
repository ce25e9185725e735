"""``GET /v1/usage``: the calling key's own usage, as GetUsage answers it.

Query parameters: ``start_time`` and ``end_time`` (RFC 3339, e.g.
``2026-01-01T00:00:00Z``; both unset: the current calendar month in the ledger's
time zone) and ``model`` (whose global rate limits count in the headroom). The body
is GetUsage's answer in JSON (snake_case, amounts in micro-dollars); the headroom
also goes in OpenAI's ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from services.core.errors import FieldViolation, InvalidArgumentError
from services.gateway.http.errors import headroom_headers
from services.gateway.http.server import Call, Extension, HttpDoor
from services.gateway.usage import KeyUsage, UsageLine, UsageReader
from services.gateway.usage_codec import MAX_MODEL_CHARS


class UsageRoute(Extension):
    """The usage route, over the same reader as the gRPC door's GetUsage."""

    def __init__(self, reader: UsageReader) -> None:
        self._reader = reader

    def routes(self, door: HttpDoor) -> list[web.RouteDef]:
        """``GET /v1/usage``."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._usage(request, door.authenticate(request))

        return [web.get("/v1/usage", handler)]

    async def _usage(self, request: web.Request, call: Call) -> web.StreamResponse:
        violations: list[FieldViolation] = []
        start = _time_param(request, "start_time", violations)
        end = _time_param(request, "end_time", violations)
        model = request.query.get("model", "").strip()
        if len(model) > MAX_MODEL_CHARS:
            violations.append(
                FieldViolation("model", f"must be at most {MAX_MODEL_CHARS} characters")
            )
        if violations:
            raise InvalidArgumentError(violations)
        usage = await self._reader.usage(call.principal, start, end, model)
        return web.json_response(
            usage_json(usage), headers=headroom_headers(usage.headroom or ())
        )


def _time_param(
    request: web.Request, name: str, violations: list[FieldViolation]
) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        violations.append(
            FieldViolation(name, "must be an RFC 3339 time with a zone offset or Z")
        )
        return None
    return at.timestamp()


def _rfc3339(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def _line(line: UsageLine) -> dict[str, Any]:
    return {
        "key": line.key,
        "requests": line.requests,
        "cost_micros": line.cost_micros,
        "saved_micros": line.saved_micros,
        "input_tokens": line.input_tokens,
        "cached_input_tokens": line.cached_input_tokens,
        "output_tokens": line.output_tokens,
    }


def usage_json(usage: KeyUsage) -> dict[str, Any]:
    """GetUsage's answer as the JSON body of ``GET /v1/usage``."""
    totals = usage.totals
    return {
        "object": "usage",
        "api_key_id": usage.principal.key_id,
        "tenant_id": usage.principal.tenant_id,
        "start_time": None if totals.start is None else _rfc3339(totals.start),
        "end_time": _rfc3339(totals.end),
        "requests": totals.requests,
        "cost_micros": totals.cost_micros,
        "saved_micros": totals.saved_micros,
        "currency": totals.currency_code,
        "by_model": [_line(line) for line in totals.by_model],
        "by_day": [_line(line) for line in totals.by_day],
        "budgets": [
            {
                "scope": budget.scope.value,
                "subject": budget.subject,
                "period": budget.period,
                "hard": budget.hard,
                "limit_micros": budget.limit_micros,
                "spent_micros": budget.spent_micros,
                "reserved_micros": budget.reserved_micros,
                "remaining_micros": budget.remaining_micros,
                "resets_at": _rfc3339(budget.resets_at),
            }
            for budget in usage.budgets
        ],
        "budget_remaining_micros": usage.budget_remaining_micros,
        "rate_headroom": None
        if usage.headroom is None
        else [
            {
                "metric": item.metric,
                "limit_per_minute": item.limit_per_minute,
                "remaining": item.remaining,
                "reset_seconds": item.reset_seconds,
            }
            for item in usage.headroom
        ],
    }
