"""``POST /v1/embeddings``: rate-limited, budgeted, cached exactly, recorded.

The orchestrator has no embeddings path yet, so this lane calls the gateway's
ports itself (ratelimit, ledger, outbox) around one upstream call through the
gateway's ``openai`` client; it belongs beside the pipeline once the orchestrator
grows an embeddings entry point, and then the gRPC door gets it too.
The exact cache is in this process (an LRU bounded in entries): vectors are not
answers the cache service stores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections import OrderedDict
from typing import Any

import openai
import structlog
from aiohttp import web

from services.core.clock import Clock
from services.core.errors import (
    FieldViolation,
    InvalidArgumentError,
    QuotaViolation,
    ResourceExhaustedError,
    UnavailableError,
)
from services.core.tokens import count_tokens
from services.gateway import access
from services.gateway.domain import CacheStatus, Principal, Usage, UsageRecord
from services.gateway.http.server import Call, Extension, HttpDoor, read_json
from services.gateway.pipeline.admit import Admission
from services.gateway.ports import (
    DependencyUnavailableError,
    LedgerPort,
    OutboxPort,
    RateLimiterPort,
)

_log = structlog.get_logger("tollgate.gateway.http")

MAX_INPUTS = 2048
MAX_CACHE_ENTRIES = 4096
DEPLOYMENT = "embeddings"


class Embeddings(Extension):
    """The embeddings route and its lane."""

    def __init__(
        self,
        *,
        client: openai.AsyncOpenAI,
        admission: Admission,
        ratelimit: RateLimiterPort,
        ledger: LedgerPort,
        outbox: OutboxPort,
        clock: Clock,
        timeout_seconds: float,
    ) -> None:
        self._client = client
        self._ratelimit = ratelimit
        self._ledger = ledger
        self._outbox = outbox
        self._admission = admission
        self._clock = clock
        self._timeout = timeout_seconds
        self._cache: OrderedDict[str, tuple[list[list[float]], int]] = OrderedDict()

    def routes(self, door: HttpDoor) -> list[web.RouteDef]:
        """``POST /v1/embeddings``."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._embed(request, door.authenticate(request))

        return [web.post("/v1/embeddings", handler)]

    async def _embed(self, request: web.Request, call: Call) -> web.StreamResponse:
        body = await read_json(request)
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise _bad("model", "Missing required parameter: 'model'.")
        inputs = _inputs(body.get("input"))
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or dimensions < 1
        ):
            raise _bad("dimensions", "must be a positive integer")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _bad("encoding_format", "must be 'float' or 'base64'")
        tokens = sum(
            count_tokens(item) if isinstance(item, str) else len(item)
            for item in inputs
        )
        principal = call.principal
        access.note_request(principal.user_id, model)
        reservation = await self._acquire(call, model, tokens)
        cache_bypass = request.headers.get("x-tollgate-cache", "").lower() == "bypass"
        key = _cache_key(principal, model, dimensions, inputs)
        cached = None if cache_bypass else self._cache.get(key)
        status = CacheStatus.SKIPPED if cache_bypass else CacheStatus.MISS
        budget_reservation = ""
        if cached is not None:
            self._cache.move_to_end(key)
            vectors, used = cached
            status = CacheStatus.EXACT
            await self._reconcile(reservation, 0)
        else:
            budget_reservation = await self._check_budget(
                call, model, tokens, reservation
            )
            vectors, used = await self._upstream(model, inputs, dimensions, reservation)
            if not cache_bypass:
                self._cache[key] = (vectors, used)
                while len(self._cache) > MAX_CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        usage = Usage(input_tokens=used)
        cost = await self._record(call, model, usage, status, budget_reservation)
        access.note_served(model, status)
        access.note_usage(usage, cost)
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(vector) if encoding == "base64" else vector,
            }
            for index, vector in enumerate(vectors)
        ]
        answer = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }
        return web.json_response(
            answer,
            dumps=lambda v: json.dumps(v, separators=(",", ":")),
            headers={
                "x-request-id": call.request_id,
                "x-tollgate-cache-status": status.value,
                "x-tollgate-cost-micros": str(cost),
                "x-tollgate-model": model,
                "x-tollgate-deployment": DEPLOYMENT,
                "x-tollgate-degradation-level": "0",
            },
        )

    async def _acquire(self, call: Call, model: str, tokens: int) -> str:
        decision = await self._admission.acquire(
            call.request_id, call.principal, model, tokens
        )
        return decision.reservation_id

    async def _reconcile(self, reservation: str, tokens: int) -> None:
        if not reservation:
            return
        try:
            await self._ratelimit.reconcile(reservation, tokens)
        except DependencyUnavailableError:
            _log.warning("embeddings_reconcile_skipped")

    async def _check_budget(
        self, call: Call, model: str, tokens: int, reservation: str
    ) -> str:
        try:
            verdict = await self._ledger.check_budget(
                call.request_id, call.principal, model, tokens, 0
            )
        except DependencyUnavailableError:
            return ""
        except InvalidArgumentError:
            # The ledger prices no such model (its table lists chat models only):
            # no budget can hold it; the record below says the same.
            _log.warning("embeddings_model_unpriced", model=model)
            return ""
        if not verdict.allowed:
            await self._reconcile(reservation, 0)
            raise ResourceExhaustedError(
                f"budget exceeded: {verdict.description}",
                reason="BUDGET_EXCEEDED",
                retry_after=None
                if verdict.resets_at is None
                else max(1.0, verdict.resets_at - self._clock.now()),
                violations=[QuotaViolation("budget", verdict.description)],
            )
        return verdict.reservation_id

    async def _upstream(
        self,
        model: str,
        inputs: list[str | list[int]],
        dimensions: int | None,
        reservation: str,
    ) -> tuple[list[list[float]], int]:
        extra: dict[str, Any] = {} if dimensions is None else {"dimensions": dimensions}
        try:
            result = await self._client.embeddings.create(
                model=model,
                input=inputs,  # type: ignore[arg-type]
                encoding_format="float",
                timeout=self._timeout,
                **extra,
            )
        except openai.BadRequestError as error:
            await self._reconcile(reservation, 0)
            raise InvalidArgumentError(
                [FieldViolation(_param(error), "the upstream refused the request")],
                message=f"the upstream refused the request: {error.message[:200]}",
            ) from None
        except openai.RateLimitError as error:
            await self._reconcile(reservation, 0)
            retry = error.response.headers.get("retry-after")
            raise ResourceExhaustedError(
                "the upstream is rate limiting",
                reason="UPSTREAM_THROTTLED",
                retry_after=float(retry) if retry and retry.isdigit() else 1.0,
            ) from None
        except openai.OpenAIError:
            await self._reconcile(reservation, 0)
            raise UnavailableError(
                "the upstream could not answer",
                reason="UPSTREAM_UNAVAILABLE",
                retry_after=1.0,
            ) from None
        used = result.usage.prompt_tokens
        await self._reconcile(reservation, used)
        ordered = sorted(result.data, key=lambda item: item.index)
        return [list(item.embedding) for item in ordered], used

    async def _record(
        self,
        call: Call,
        model: str,
        usage: Usage,
        status: CacheStatus,
        budget_reservation: str,
    ) -> int:
        record = UsageRecord(
            request_id=call.request_id,
            principal=call.principal,
            model=model,
            requested_model=model,
            deployment=DEPLOYMENT,
            usage=usage,
            cache_status=status,
            occurred_at=self._clock.now(),
            budget_reservation_id=budget_reservation,
        )
        try:
            return (await self._ledger.record(record)).cost_micros
        except DependencyUnavailableError:
            await self._outbox.put(record)
        except Exception as error:  # a refused record must not lose the answer
            _log.warning("embeddings_record_failed", error_type=type(error).__name__)
        return 0


def _bad(param: str, message: str) -> InvalidArgumentError:
    return InvalidArgumentError([FieldViolation(param, message)])


def _param(error: openai.BadRequestError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("param"), str):
        return str(body["param"])
    return "input"


def _inputs(value: Any) -> list[str | list[int]]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise _bad("input", "must be a non-empty string or array")
    if len(items) > MAX_INPUTS:
        raise _bad("input", f"must hold at most {MAX_INPUTS} inputs")
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise _bad(f"input[{index}]", "must not be empty")
        elif not (
            isinstance(item, list) and item and all(isinstance(t, int) for t in item)
        ):
            raise _bad(f"input[{index}]", "must be a string or an array of tokens")
    return items


def _cache_key(
    principal: Principal, model: str, dimensions: int | None, inputs: list[Any]
) -> str:
    document = json.dumps(
        [principal.tenant_id, model, dimensions, inputs], separators=(",", ":")
    )
    return hashlib.sha256(document.encode()).hexdigest()


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
