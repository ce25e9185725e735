"""The request flow of DESIGN.md section 1, with one written policy per dependency.

| dependency | when it fails or its breaker is open                                  |
|------------|-----------------------------------------------------------------------|
| ratelimit  | fail-open to the local limiter (default) or fail-closed, by config     |
| cache      | treated as a miss; the write is skipped                                |
| router     | the local default route table                                          |
| costs      | records go to the durable outbox, replayed in order; budget checks    |
|            | are skipped (allowed) while the ledger cannot answer                   |
| upstream   | retries within the deadline, then the per-model breaker; an open       |
|            | breaker moves down the ladder: the next cheaper model with a closed    |
|            | breaker, then the static answer of the request type                    |

Calls towards the upstream wait in the priority queue (``queue.py``); identical
requests in flight share one upstream call (``singleflight.py``): the followers are
answered like exact cache hits, at no cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from services.core import metrics
from services.core.breaker import BreakerConfig, BreakerSnapshot, CircuitBreaker
from services.core.clock import Clock
from services.core.errors import (
    QuotaViolation,
    ResourceExhaustedError,
    TollgateError,
    UnavailableError,
)
from services.core.pricing import PricingTable, TokenUsage, UnknownModelError
from services.core.tokens import count_tokens, truncate_tokens
from services.gateway.domain import (
    BudgetVerdict,
    CachedAnswer,
    CacheKeyParts,
    CacheStatus,
    DegradationLevel,
    Lane,
    Principal,
    Priority,
    RateDecision,
    ResponseReply,
    ResponseRequest,
    Route,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamStart,
    UpstreamAnswer,
    Usage,
    UsageRecord,
)
from services.gateway.fallbacks import STATIC_ANSWERS, LocalLimiter, local_route
from services.gateway.ports import (
    CachePort,
    DependencyUnavailableError,
    LedgerPort,
    OutboxPort,
    RateLimiterPort,
    RouterPort,
    TicketPort,
    UpstreamPort,
    UpstreamStreamBrokenError,
    UpstreamThrottledError,
)
from services.gateway.queue import AdmissionQueue
from services.gateway.singleflight import SingleFlight

_log = structlog.get_logger("tollgate.gateway")

OUTBOX_BATCH = 100


@dataclass(frozen=True)
class FlowConfig:
    """The orchestrator's knobs, from the gateway settings."""

    ratelimit_fail_open: bool
    upstream_timeout_seconds: float
    upstream_breaker: BreakerConfig
    # Seconds an automatic degradation hold lasts on the router; 0 disables them.
    auto_degradation_hold_seconds: float = 0.0


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the upstream is called."""

    principal: Principal
    request: ResponseRequest
    request_id: str
    started: float
    deadline: float
    route: Route
    input_text: str
    dropped_tokens: int
    instructions: str
    prompt_tokens: int
    """Tokens of ``instructions`` and ``input_text``, counted once."""
    temperature: float | None
    key: CacheKeyParts
    decision: RateDecision
    cached: CachedAnswer | None
    cache_status: CacheStatus

    @property
    def flight_key(self) -> str:
        """The identity of the upstream call: the exact cache key's parts, hashed."""
        return _digest(
            self.key.tenant_id,
            self.key.model,
            self.key.instructions,
            self.key.input,
            repr(self.key.temperature),
            str(self.key.max_output_tokens),
        )

    @property
    def prompt_cache_key(self) -> str:
        """Groups requests that share the stable prefix (tenant and instructions)."""
        return _digest(self.principal.tenant_id, self.instructions)[:32]


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class _Outcome:
    """What the ladder produced: an upstream answer or a static answer."""

    answer: UpstreamAnswer
    model: str
    level: DegradationLevel
    from_upstream: bool


class Orchestrator:
    """Runs CreateResponse and StreamResponse; keeps the gateway's state."""

    def __init__(
        self,
        *,
        ratelimit: RateLimiterPort,
        cache: CachePort,
        router: RouterPort,
        ledger: LedgerPort,
        upstream: UpstreamPort,
        outbox: OutboxPort,
        tickets: TicketPort,
        local_limiter: LocalLimiter,
        queue: AdmissionQueue,
        prices: PricingTable,
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
        self._tickets = tickets
        self._local_limiter = local_limiter
        self.queue = queue
        self._prices = prices
        self._downstream_breakers = downstream_breakers
        self._config = config
        self._clock = clock
        self._upstream_breakers: dict[str, CircuitBreaker] = {}
        self._backoff_factors: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._flights: SingleFlight[_Outcome] = SingleFlight()
        self._holds: dict[DegradationLevel, float] = {}
        self.degradation_level = DegradationLevel.FULL_SERVICE

    # -- CreateResponse

    async def create_response(
        self,
        principal: Principal,
        request: ResponseRequest,
        request_id: str,
        time_remaining: float | None,
    ) -> ResponseReply:
        """Answer one validated request for an authenticated principal."""
        plan = await self._plan(principal, request, request_id, time_remaining)
        if plan.cached is not None:
            return await self._serve_hit(plan, plan.cached)
        if request.asynchronous or plan.route.lane is Lane.QUEUE:
            # Answered later by ticket: through the Batch API, durably queued.
            self._settle(plan.decision, 0)
            ticket = await self._tickets.enqueue_ticket(
                plan.principal, replace(request, model=plan.route.model)
            )
            return self._reply(
                plan,
                "",
                plan.route.model,
                Usage(),
                plan.cache_status,
                ticket_id=ticket,
            )
        lane_text = self._lane_text(plan)
        if lane_text is not None:
            return self._reply(
                plan, lane_text, plan.route.model, Usage(), plan.cache_status
            )

        budget = await self._check_budget(plan)
        try:
            if request.cache_bypass:
                outcome, shared = await self._ladder(plan, budget), False
            else:
                outcome, shared = await self._flights.do(
                    plan.flight_key, lambda: self._ladder(plan, budget)
                )
        except BaseException:
            self._settle(plan.decision, 0)
            raise
        answer = outcome.answer
        if not outcome.from_upstream:
            self._settle(plan.decision, 0)
            return self._reply(
                plan,
                answer.output_text,
                plan.route.model,
                Usage(),
                plan.cache_status,
                level=outcome.level,
            )
        if shared:
            # Answered by an identical request's upstream call: like an exact hit.
            self._settle(plan.decision, 0)
            await self._book(
                plan,
                answer.model,
                answer.usage,
                CacheStatus.EXACT,
                budget.reservation_id,
            )
            return self._reply(
                plan,
                answer.output_text,
                answer.model,
                answer.usage,
                CacheStatus.EXACT,
                similarity=1.0,
                level=outcome.level,
                output_truncated=answer.truncated,
            )
        self._settle(plan.decision, answer.usage.total_tokens)
        self._store_if_cacheable(plan, outcome)
        cost = await self._book(
            plan, answer.model, answer.usage, plan.cache_status, budget.reservation_id
        )
        return self._reply(
            plan,
            answer.output_text,
            answer.model,
            answer.usage,
            plan.cache_status,
            cost=cost,
            level=outcome.level,
            output_truncated=answer.truncated,
        )

    # -- StreamResponse

    async def stream_response(
        self,
        principal: Principal,
        request: ResponseRequest,
        request_id: str,
        time_remaining: float | None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream one answer: a start event, deltas, and an end event if complete.

        A stream that breaks upstream raises after its deltas, never ending cleanly;
        what was consumed is booked even then, and when the client goes away.
        """
        plan = await self._plan(principal, request, request_id, time_remaining)
        if plan.cached is not None:
            hit = plan.cached
            yield replace(
                self._start(plan, hit.model, hit.status, plan.route.degradation_level),
                similarity=hit.similarity,
                cache_age_seconds=hit.age_seconds,
            )
            yield StreamDelta(hit.output_text)
            self._settle(plan.decision, 0)
            await self._book(plan, hit.model, hit.usage, hit.status, "")
            yield StreamEnd(hit.usage, 0, output_truncated=False)
            return
        lane_text = self._lane_text(plan)
        if lane_text is not None:
            yield self._start(
                plan, plan.route.model, plan.cache_status, plan.route.degradation_level
            )
            yield StreamDelta(lane_text)
            yield StreamEnd(Usage(), 0, output_truncated=False)
            return

        budget = await self._check_budget(plan)
        choice = self._choose_model(plan, budget)
        if choice is None:
            outcome = self._static_outcome(plan)
            self._settle(plan.decision, 0)
            yield self._start(plan, plan.route.model, plan.cache_status, outcome.level)
            yield StreamDelta(outcome.answer.output_text)
            yield StreamEnd(Usage(), 0, output_truncated=False)
            return
        model, level = choice
        breaker = self._upstream_breaker(model)
        delivered: list[str] = []
        opened = False
        answer: UpstreamAnswer | None = None
        started = self._clock.monotonic()
        try:
            async with self.queue.slot(model, request.priority, plan.deadline):
                upstream = self._upstream.stream(
                    model=model,
                    instructions=plan.instructions,
                    input_text=plan.input_text,
                    max_output_tokens=plan.route.max_output_tokens,
                    temperature=plan.temperature,
                    timeout_seconds=max(0.0, plan.deadline - self._clock.monotonic()),
                    prompt_cache_key=plan.prompt_cache_key,
                )
                async for event in upstream:
                    if not opened:
                        opened = True
                        yield self._start(plan, model, plan.cache_status, level)
                    if isinstance(event, str):
                        delivered.append(event)
                        yield StreamDelta(event)
                    else:
                        answer = event
        except UpstreamStreamBrokenError as error:
            breaker.record_failure()
            self._spawn(self._report_outcome(plan.route, model, started, error=True))
            raise UnavailableError(
                "the upstream stream broke; the output delivered so far is partial",
                reason="UPSTREAM_STREAM_BROKEN",
                retry_after=1.0,
                metadata={
                    "partialOutput": "true",
                    "deliveredChars": str(len(error.partial_text)),
                },
            ) from error
        except UpstreamThrottledError as error:
            breaker.record_success()  # it answered: throttling is not an outage
            raise self._throttled(model, error) from error
        except DependencyUnavailableError as error:
            breaker.record_failure()
            self._spawn(self._report_outcome(plan.route, model, started, error=True))
            raise _upstream_unavailable() from error
        except BaseException:
            if not opened:
                breaker.release()
            raise
        finally:
            if answer is None:
                consumed = Usage()
                if opened:
                    # Broken or abandoned mid-stream: book what was consumed, off
                    # the stream's task (a cancelled task must not await).
                    consumed = Usage(
                        input_tokens=plan.prompt_tokens,
                        output_tokens=count_tokens("".join(delivered)),
                    )
                    self._spawn(self._book_quietly(plan, model, consumed, budget))
                self._settle(plan.decision, consumed.total_tokens)
        if answer is None:
            # The upstream iterator ended without its final event.
            raise UnavailableError(
                "the upstream stream ended without completing",
                reason="UPSTREAM_STREAM_BROKEN",
                retry_after=1.0,
                metadata={"partialOutput": "true"},
            )
        breaker.record_success()
        self._spawn(self._report_outcome(plan.route, model, started, error=False))
        if self._backoff_factors.get(model, 1.0) > 1.0:
            self._spawn(self._report_success(model))
        self._settle(plan.decision, answer.usage.total_tokens)
        self._store_if_cacheable(plan, _Outcome(answer, model, level, True))
        cost = await self._book(
            plan, answer.model, answer.usage, plan.cache_status, budget.reservation_id
        )
        yield StreamEnd(answer.usage, cost, output_truncated=answer.truncated)

    # -- stages

    async def _plan(
        self,
        principal: Principal,
        request: ResponseRequest,
        request_id: str,
        time_remaining: float | None,
    ) -> _Plan:
        started = self._clock.monotonic()
        budget = self._config.upstream_timeout_seconds
        if time_remaining is not None:
            budget = min(budget, time_remaining)
        if request.user_id:
            principal = replace(principal, user_id=request.user_id)

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
        prompt_tokens = count_tokens(instructions) + input_tokens
        estimated = prompt_tokens + route.max_output_tokens
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
        return _Plan(
            principal=principal,
            request=request,
            request_id=request_id,
            started=started,
            deadline=started + budget,
            route=route,
            input_text=input_text,
            dropped_tokens=dropped,
            instructions=instructions,
            prompt_tokens=prompt_tokens,
            temperature=temperature,
            key=key,
            decision=decision,
            cached=cached,
            cache_status=cache_status,
        )

    async def _serve_hit(self, plan: _Plan, hit: CachedAnswer) -> ResponseReply:
        self._settle(plan.decision, 0)
        await self._book(plan, hit.model, hit.usage, hit.status, "")
        reply = self._reply(
            plan,
            hit.output_text,
            hit.model,
            hit.usage,
            hit.status,
            similarity=hit.similarity,
        )
        return replace(reply, cache_age_seconds=hit.age_seconds)

    def _lane_text(self, plan: _Plan) -> str | None:
        """The answer of a lane that does not call the upstream, if this is one."""
        lane = plan.route.lane
        if lane in (Lane.CACHE_ONLY, Lane.STATIC):
            self._settle(plan.decision, 0)
            return plan.route.fallback_text or STATIC_ANSWERS[plan.request.request_type]
        if lane is Lane.QUEUE:
            # Streams cannot wait for a ticket; CreateResponse gets one instead.
            self._settle(plan.decision, 0)
            raise UnavailableError(
                "the service is in maintenance; use CreateResponse to be answered "
                "later by ticket",
                reason="MAINTENANCE",
                retry_after=60.0,
            )
        return None

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

    async def _check_budget(self, plan: _Plan) -> BudgetVerdict:
        try:
            verdict = await self._ledger.check_budget(
                plan.request_id,
                plan.principal,
                plan.route.model,
                plan.prompt_tokens,
                plan.route.max_output_tokens,
            )
        except DependencyUnavailableError:
            _log.warning("budget_check_skipped_ledger_unavailable")
            return BudgetVerdict(allowed=True)
        if not verdict.allowed:
            self._settle(plan.decision, 0)
            raise ResourceExhaustedError(
                f"budget exceeded: {verdict.description}",
                reason="BUDGET_EXCEEDED",
                retry_after=(
                    None
                    if verdict.resets_at is None
                    else max(1.0, verdict.resets_at - self._clock.now())
                ),
                violations=[QuotaViolation("budget", verdict.description)],
            )
        return verdict

    def _choose_model(
        self, plan: _Plan, budget: BudgetVerdict
    ) -> tuple[str, DegradationLevel] | None:
        """The first model of the ladder whose breaker lets a call through.

        A budget downgrade replaces the ladder with its one model. ``allow()`` counts
        half-open probes, so only the model actually used is asked.
        """
        route = plan.route
        if budget.downgrade_model:
            ladder: tuple[str, ...] = (budget.downgrade_model,)
        else:
            ladder = (route.model, *route.fallback_models)
        for model in ladder:
            if self._upstream_breaker(model).allow():
                level = route.degradation_level
                if model != route.model:
                    level = max(level, DegradationLevel.REDUCED_QUALITY)
                    if not budget.downgrade_model:
                        self._hold_degradation(DegradationLevel.REDUCED_QUALITY)
                return model, level
        self._hold_degradation(DegradationLevel.STATIC_FALLBACK)
        return None

    def _hold_degradation(self, level: DegradationLevel) -> None:
        """Hold ``level`` on the router while circuits stay open (seed section 6).

        Every replica then routes at that level without first failing on the open
        model; the hold lapses once nobody renews it, so recovery needs no operator.
        Renewed at most every half hold, per level.
        """
        hold = self._config.auto_degradation_hold_seconds
        now = self._clock.monotonic()
        if hold <= 0 or now - self._holds.get(level, -hold) < hold / 2:
            return
        self._holds[level] = now
        self._spawn(self._send_hold(level, hold))

    async def _send_hold(self, level: DegradationLevel, hold: float) -> None:
        try:
            await self._router.hold_degradation(
                level, hold, "gateway: upstream circuits open"
            )
        except DependencyUnavailableError:
            _log.info("degradation_hold_skipped", level=level.name)

    def _static_outcome(self, plan: _Plan) -> _Outcome:
        text = plan.route.fallback_text or STATIC_ANSWERS[plan.request.request_type]
        return _Outcome(
            UpstreamAnswer(text, plan.route.model, Usage(), truncated=False),
            plan.route.model,
            max(plan.route.degradation_level, DegradationLevel.STATIC_FALLBACK),
            from_upstream=False,
        )

    async def _ladder(self, plan: _Plan, budget: BudgetVerdict) -> _Outcome:
        choice = self._choose_model(plan, budget)
        if choice is None:
            _log.warning("upstream_circuits_open_static_fallback")
            return self._static_outcome(plan)
        model, level = choice
        breaker = self._upstream_breaker(model)
        started = self._clock.monotonic()
        try:
            async with self.queue.slot(model, plan.request.priority, plan.deadline):
                answer = await self._upstream.create(
                    model=model,
                    instructions=plan.instructions,
                    input_text=plan.input_text,
                    max_output_tokens=plan.route.max_output_tokens,
                    temperature=plan.temperature,
                    timeout_seconds=max(0.0, plan.deadline - self._clock.monotonic()),
                    prompt_cache_key=plan.prompt_cache_key,
                )
        except UpstreamThrottledError as error:
            breaker.record_success()  # it answered: throttling is not an outage
            raise self._throttled(model, error) from error
        except DependencyUnavailableError as error:
            breaker.record_failure()
            self._spawn(self._report_outcome(plan.route, model, started, error=True))
            raise _upstream_unavailable() from error
        except BaseException:
            # Refused before the upstream (queue full, deadline) or rejected as a bad
            # request: nothing learned about its health.
            breaker.release()
            raise
        breaker.record_success()
        self._spawn(self._report_outcome(plan.route, model, started, error=False))
        if self._backoff_factors.get(model, 1.0) > 1.0:
            self._spawn(self._report_success(model))
        return _Outcome(answer, model, level, from_upstream=True)

    def _store_if_cacheable(self, plan: _Plan, outcome: _Outcome) -> None:
        # Only complete answers of the routed model go under the routed model's key:
        # a fallback's cheaper answer must not outlive the outage as an exact hit.
        if (
            plan.cache_status is CacheStatus.MISS
            and not outcome.answer.truncated
            and outcome.model == plan.route.model
        ):
            self._spawn(self._store(plan.request_id, plan.key, outcome.answer))

    def _throttled(
        self, model: str, error: UpstreamThrottledError
    ) -> ResourceExhaustedError:
        self._spawn(self._report_throttle(model, error.retry_after))
        return ResourceExhaustedError(
            "the upstream is rate limiting; retry later",
            reason="UPSTREAM_RATE_LIMITED",
            retry_after=max(error.retry_after, 1.0),
        )

    async def _book(
        self,
        plan: _Plan,
        model: str,
        usage: Usage,
        cache_status: CacheStatus,
        budget_reservation_id: str,
    ) -> int:
        record = UsageRecord(
            request_id=plan.request_id,
            principal=plan.principal,
            model=model,
            requested_model=plan.request.model if plan.request.model != "auto" else "",
            deployment=plan.route.deployment,
            usage=usage,
            cache_status=cache_status,
            occurred_at=self._clock.now(),
            budget_reservation_id=budget_reservation_id,
        )
        try:
            return (await self._ledger.record(record)).cost_micros
        except DependencyUnavailableError:
            await self._outbox.put(record)
            _log.warning("ledger_unavailable_outboxed")
            return self._estimate_cost(record)
        except TollgateError as error:
            # The ledger refused the record (say, a model it has no price for): the
            # answer stands, and the record waits for an operator, not lost.
            await self._outbox.dead_letter(record, error.reason)
            _log.error("ledger_rejected_record_dead_lettered", reason=error.reason)
        return 0

    def _estimate_cost(self, record: UsageRecord) -> int:
        """What the ledger will book for ``record``: same prices, same rule."""
        if record.cache_status in (CacheStatus.EXACT, CacheStatus.SEMANTIC):
            return 0
        usage = record.usage
        try:
            return self._prices.cost_micros(
                record.model,
                TokenUsage(
                    usage.input_tokens, usage.cached_input_tokens, usage.output_tokens
                ),
                at=datetime.fromtimestamp(record.occurred_at, UTC),
                batch=record.batch,
            )
        except UnknownModelError:
            return 0

    async def _book_quietly(
        self, plan: _Plan, model: str, usage: Usage, budget: BudgetVerdict
    ) -> None:
        await self._book(plan, model, usage, plan.cache_status, budget.reservation_id)

    def _start(
        self,
        plan: _Plan,
        model: str,
        status: CacheStatus,
        level: DegradationLevel,
    ) -> StreamStart:
        return StreamStart(
            request_id=plan.request_id,
            model=model,
            deployment=plan.route.deployment,
            cache_status=status,
            degradation_level=level,
            input_truncated=plan.dropped_tokens > 0,
        )

    def _reply(
        self,
        plan: _Plan,
        text: str,
        model: str,
        usage: Usage,
        status: CacheStatus,
        *,
        similarity: float = 0.0,
        cost: int = 0,
        level: DegradationLevel | None = None,
        output_truncated: bool = False,
        ticket_id: str = "",
    ) -> ResponseReply:
        return ResponseReply(
            output_text=text,
            model=model,
            deployment=plan.route.deployment,
            cache_status=status,
            similarity=similarity,
            usage=usage,
            cost_micros=cost,
            request_id=plan.request_id,
            degradation_level=plan.route.degradation_level if level is None else level,
            input_truncated=plan.dropped_tokens > 0,
            input_tokens_dropped=plan.dropped_tokens,
            output_truncated=output_truncated,
            latency_seconds=self._clock.monotonic() - plan.started,
            ticket_id=ticket_id,
        )

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

    async def _report_outcome(
        self, route: Route, model: str, started: float, *, error: bool
    ) -> None:
        try:
            await self._router.record_outcome(
                route.deployment, model, self._clock.monotonic() - started, error
            )
        except DependencyUnavailableError:
            _log.info("outcome_report_skipped")

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
            except TollgateError as error:
                await self._outbox.dead_letter(record, error.reason)
                _log.error("ledger_rejected_record_dead_lettered", reason=error.reason)
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

    def export_metrics(self) -> None:
        """Set the breaker and queue gauges from the live state (at scrape time)."""
        for snapshot in self.breakers():
            metrics.BREAKER_STATE.labels(snapshot.name).set(
                metrics.BREAKER_STATE_VALUES[snapshot.state.value]
            )
        for priority in Priority:
            metrics.QUEUE_DEPTH.labels(priority.name.lower()).set(
                self.queue.depth(priority)
            )
        metrics.QUEUE_IN_FLIGHT.set(self.queue.in_flight)


def _upstream_unavailable() -> UnavailableError:
    return UnavailableError(
        "the upstream is unavailable", reason="UPSTREAM_UNAVAILABLE", retry_after=1.0
    )
