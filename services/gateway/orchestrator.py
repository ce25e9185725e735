"""The request flow of DESIGN.md section 1, with one written policy per dependency.

| dependency | when it fails or its breaker is open                                 |
|------------|----------------------------------------------------------------------|
| ratelimit  | fail-open to the local limiter (default) or fail-closed, by config    |
| cache      | treated as a miss; the write is skipped                               |
| router     | the local default route table                                          |
| costs      | the record goes to the durable outbox and is replayed in order        |
| upstream   | retries, then the per-model breaker; an open breaker falls back to the |
|            | next cheaper model whose breaker is closed                             |
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from services.core.breaker import BreakerConfig, BreakerSnapshot, CircuitBreaker
from services.core.clock import Clock
from services.core.errors import (
    QuotaViolation,
    ResourceExhaustedError,
    UnavailableError,
)
from services.core.tokens import count_tokens, truncate_tokens
from services.gateway.domain import (
    CachedAnswer,
    CacheKeyParts,
    CacheStatus,
    DegradationLevel,
    Lane,
    Principal,
    RateDecision,
    ResponseReply,
    ResponseRequest,
    Route,
    UpstreamAnswer,
    Usage,
    UsageRecord,
)
from services.gateway.fallbacks import LocalLimiter, local_route
from services.gateway.ports import (
    CachePort,
    DependencyUnavailableError,
    LedgerPort,
    OutboxPort,
    RateLimiterPort,
    RouterPort,
    UpstreamPort,
    UpstreamThrottledError,
)

_log = structlog.get_logger("tollgate.gateway")

OUTBOX_BATCH = 100


@dataclass(frozen=True)
class FlowConfig:
    """The orchestrator's knobs, from the gateway settings."""

    ratelimit_fail_open: bool
    upstream_timeout_seconds: float
    upstream_breaker: BreakerConfig


class Orchestrator:
    """Runs CreateResponse through every stage and keeps the gateway's state."""

    def __init__(
        self,
        *,
        ratelimit: RateLimiterPort,
        cache: CachePort,
        router: RouterPort,
        ledger: LedgerPort,
        upstream: UpstreamPort,
        outbox: OutboxPort,
        local_limiter: LocalLimiter,
        downstream_breakers: list[CircuitBreaker],
        config: FlowConfig,
        clock: Clock,
    ) -> None:
        self._ratelimit = ratelimit
        self._cache = cache
        self._router = router
        self._ledger = ledger
        self._upstream = upstream
        self._outbox = outbox
        self._local_limiter = local_limiter
        self._downstream_breakers = downstream_breakers
        self._config = config
        self._clock = clock
        self._upstream_breakers: dict[str, CircuitBreaker] = {}
        self._backoff_factors: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.degradation_level = DegradationLevel.FULL_SERVICE
        self.in_flight = 0

    # -- the flow

    async def create_response(
        self,
        principal: Principal,
        request: ResponseRequest,
        request_id: str,
        time_remaining: float | None,
    ) -> ResponseReply:
        """Answer one validated request for an authenticated principal."""
        started = self._clock.monotonic()
        budget = self._config.upstream_timeout_seconds
        if time_remaining is not None:
            budget = min(budget, time_remaining)
        deadline = started + budget
        if request.user_id:
            principal = Principal(
                principal.tenant_id,
                principal.service,
                request.user_id,
                principal.user_tier,
            )

        input_tokens = count_tokens(request.input)
        route = await self._route(request_id, principal, request, input_tokens)
        self.degradation_level = route.degradation_level

        input_text, dropped = request.input, 0
        if route.input_token_cap and input_tokens > route.input_token_cap:
            cut = truncate_tokens(request.input, route.input_token_cap)
            input_text, dropped = cut.text, cut.original_tokens - cut.kept_tokens
            input_tokens = cut.kept_tokens
        instructions = "\n\n".join(
            part
            for part in (route.deployment_instructions, request.instructions)
            if part
        )
        temperature = (
            request.temperature
            if request.temperature is not None
            else route.temperature
        )
        key = CacheKeyParts(
            tenant_id=principal.tenant_id,
            model=route.model,
            instructions=instructions,
            input=input_text,
            temperature=temperature,
            max_output_tokens=route.max_output_tokens,
        )
        estimated = count_tokens(instructions) + input_tokens + route.max_output_tokens

        decision, (cached, cache_status) = await asyncio.gather(
            self._acquire(request_id, principal, route.model, estimated),
            self._lookup(request_id, key, request.cache_bypass),
        )
        if not decision.allowed:
            # Throttled requests are refused even when cached: the flowchart's order.
            raise ResourceExhaustedError(
                f"rate limit exceeded: {decision.denied_description}",
                reason="RATE_LIMITED",
                retry_after=decision.retry_after_seconds,
                violations=[
                    QuotaViolation(decision.denied_subject, decision.denied_description)
                ],
            )

        def reply(
            text: str,
            model: str,
            usage: Usage,
            status: CacheStatus,
            *,
            similarity: float = 0.0,
            cost: int = 0,
            level: DegradationLevel = route.degradation_level,
            output_truncated: bool = False,
        ) -> ResponseReply:
            return ResponseReply(
                output_text=text,
                model=model,
                deployment=route.deployment,
                cache_status=status,
                similarity=similarity,
                usage=usage,
                cost_micros=cost,
                request_id=request_id,
                degradation_level=level,
                input_truncated=dropped > 0,
                input_tokens_dropped=dropped,
                output_truncated=output_truncated,
                latency_seconds=self._clock.monotonic() - started,
            )

        if cached is not None:
            self._settle(decision, 0)
            await self._book(
                request_id,
                principal,
                request,
                route,
                cached.model,
                cached.usage,
                cached.status,
            )
            return reply(
                cached.output_text,
                cached.model,
                cached.usage,
                cached.status,
                similarity=cached.similarity,
            )

        if route.lane in (Lane.CACHE_ONLY, Lane.STATIC):
            self._settle(decision, 0)
            return reply(route.fallback_text, route.model, Usage(), cache_status)
        if route.lane is Lane.QUEUE:
            self._settle(decision, 0)
            raise UnavailableError(
                "the service is in maintenance; retry later",
                reason="MAINTENANCE",
                retry_after=60.0,
            )

        answer, level = await self._call_upstream(
            route, instructions, input_text, temperature, deadline
        )
        self._settle(decision, answer.usage.total_tokens)
        if cache_status is CacheStatus.MISS and not answer.truncated:
            self._spawn(self._store(request_id, key, answer))
        cost = await self._book(
            request_id,
            principal,
            request,
            route,
            answer.model,
            answer.usage,
            cache_status,
        )
        return reply(
            answer.output_text,
            answer.model,
            answer.usage,
            cache_status,
            cost=cost,
            level=level,
            output_truncated=answer.truncated,
        )

    # -- stages

    async def _route(
        self,
        request_id: str,
        principal: Principal,
        request: ResponseRequest,
        input_tokens: int,
    ) -> Route:
        try:
            return await self._router.route(
                request_id, principal, request, input_tokens
            )
        except DependencyUnavailableError as error:
            _log.warning("router_unavailable_local_route", dependency=error.dependency)
            return local_route(
                request.priority,
                request.request_type,
                request.model,
                request.max_output_tokens,
            )

    async def _acquire(
        self, request_id: str, principal: Principal, model: str, tokens: int
    ) -> RateDecision:
        try:
            return await self._ratelimit.acquire(request_id, principal, model, tokens)
        except DependencyUnavailableError as error:
            if not self._config.ratelimit_fail_open:
                raise UnavailableError(
                    "rate limiter unavailable",
                    reason="RATELIMIT_UNAVAILABLE",
                    retry_after=max(error.retry_after, 1.0),
                ) from error
            _log.warning("ratelimit_unavailable_local_limiter")
            return self._local_limiter.acquire(
                f"{principal.tenant_id}:{principal.user_id or principal.service}"
            )

    async def _lookup(
        self, request_id: str, key: CacheKeyParts, bypass: bool
    ) -> tuple[CachedAnswer | None, CacheStatus]:
        if bypass:
            return None, CacheStatus.SKIPPED
        try:
            hit = await self._cache.lookup(request_id, key)
        except DependencyUnavailableError:
            _log.warning("cache_unavailable_skipped")
            return None, CacheStatus.SKIPPED
        return hit, hit.status if hit else CacheStatus.MISS

    async def _call_upstream(
        self,
        route: Route,
        instructions: str,
        input_text: str,
        temperature: float | None,
        deadline: float,
    ) -> tuple[UpstreamAnswer, DegradationLevel]:
        retry_after: list[float] = []
        for index, model in enumerate((route.model, *route.fallback_models)):
            breaker = self._upstream_breaker(model)
            if not breaker.allow():
                retry_after.append(breaker.retry_after())
                continue
            self.in_flight += 1
            try:
                answer = await self._upstream.create(
                    model=model,
                    instructions=instructions,
                    input_text=input_text,
                    max_output_tokens=route.max_output_tokens,
                    temperature=temperature,
                    timeout_seconds=max(0.0, deadline - self._clock.monotonic()),
                )
            except UpstreamThrottledError as error:
                self._spawn(self._report_throttle(model, error.retry_after))
                raise ResourceExhaustedError(
                    "the upstream is rate limiting; retry later",
                    reason="UPSTREAM_RATE_LIMITED",
                    retry_after=max(error.retry_after, 1.0),
                ) from error
            except DependencyUnavailableError as error:
                breaker.record_failure()
                raise UnavailableError(
                    "the upstream is unavailable",
                    reason="UPSTREAM_UNAVAILABLE",
                    retry_after=1.0,
                ) from error
            finally:
                self.in_flight -= 1
            breaker.record_success()
            if self._backoff_factors.get(model, 1.0) > 1.0:
                self._spawn(self._report_success(model))
            level = route.degradation_level
            if index > 0:
                level = max(level, DegradationLevel.REDUCED_QUALITY)
            return answer, level
        raise UnavailableError(
            "every upstream circuit is open",
            reason="UPSTREAM_CIRCUIT_OPEN",
            retry_after=min(retry_after, default=1.0),
        )

    async def _book(
        self,
        request_id: str,
        principal: Principal,
        request: ResponseRequest,
        route: Route,
        model: str,
        usage: Usage,
        cache_status: CacheStatus,
    ) -> int:
        record = UsageRecord(
            request_id=request_id,
            principal=principal,
            model=model,
            requested_model=request.model if request.model != "auto" else "",
            deployment=route.deployment,
            usage=usage,
            cache_status=cache_status,
            occurred_at=self._clock.now(),
        )
        try:
            return (await self._ledger.record(record)).cost_micros
        except DependencyUnavailableError:
            await self._outbox.put(record)
            _log.warning("ledger_unavailable_outboxed")
            return 0

    # -- background work

    def _settle(self, decision: RateDecision, actual_tokens: int) -> None:
        if decision.reservation_id:
            self._spawn(self._reconcile(decision.reservation_id, actual_tokens))

    async def _reconcile(self, reservation_id: str, actual_tokens: int) -> None:
        try:
            await self._ratelimit.reconcile(reservation_id, actual_tokens)
        except DependencyUnavailableError:
            _log.info("reconcile_skipped_ratelimit_unavailable")

    async def _store(
        self, request_id: str, key: CacheKeyParts, answer: UpstreamAnswer
    ) -> None:
        try:
            await self._cache.store(request_id, key, answer)
        except DependencyUnavailableError:
            _log.info("cache_store_skipped")

    async def _report_throttle(self, model: str, retry_after: float) -> None:
        try:
            await self._ratelimit.report_upstream(model, True, retry_after)
            self._backoff_factors[model] = min(
                8.0, self._backoff_factors.get(model, 1.0) * 2
            )
        except DependencyUnavailableError:
            _log.info("throttle_report_skipped")

    async def _report_success(self, model: str) -> None:
        try:
            await self._ratelimit.report_upstream(model, False, 0.0)
            self._backoff_factors[model] = max(
                1.0, self._backoff_factors.get(model, 1.0) * 0.9
            )
        except DependencyUnavailableError:
            _log.info("success_report_skipped")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def replay_outbox(self) -> int:
        """Deliver waiting usage records, oldest first; returns how many went."""
        delivered = 0
        for sequence, record in await self._outbox.pending(OUTBOX_BATCH):
            try:
                await self._ledger.record(record)
            except DependencyUnavailableError:
                break
            await self._outbox.delete(sequence)
            delivered += 1
        if delivered:
            _log.info("outbox_replayed", records=delivered)
        return delivered

    async def drain_background(self) -> None:
        """Wait for background work (cache writes, reconciles) to finish."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- status

    def _upstream_breaker(self, model: str) -> CircuitBreaker:
        breaker = self._upstream_breakers.get(model)
        if breaker is None:
            breaker = self._upstream_breakers[model] = CircuitBreaker(
                f"upstream:{model}", self._config.upstream_breaker, self._clock
            )
        return breaker

    def breakers(self) -> list[BreakerSnapshot]:
        """Every breaker's state: downstream services, then upstream models."""
        return [
            breaker.snapshot()
            for breaker in (
                *self._downstream_breakers,
                *self._upstream_breakers.values(),
            )
        ]

    async def outbox_depth(self) -> int:
        """Usage records waiting for the ledger."""
        return await self._outbox.depth()
