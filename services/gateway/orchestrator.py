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
|            | breaker, then the static answer of the request type; a call that fails |
|            | or is throttled fails over to the next such model within the deadline  |
|            | (a stream only before its first event)                                 |

A request that books nothing after its budget check (a static answer, an upstream
failure or throttle, a full queue, a spent deadline, a stream that never opened)
releases its budget reservation at once instead of holding it until it expires.

The stages live in ``pipeline/``: ``plan`` counts, routes, fits and keys the
request; ``admit`` runs the limits, the cache lookup and the budget; ``serve`` the
ladder towards the upstream; ``settle`` what follows the answer. This module only
composes them, for the two shapes of answer: whole (CreateResponse) and streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from services.core import metrics
from services.core.breaker import BreakerConfig, BreakerSnapshot, CircuitBreaker
from services.core.clock import Clock
from services.core.conversation import FinishReason, ToolCall
from services.core.errors import UnavailableError
from services.core.pricing import PricingTable
from services.core.tokens import count_tokens
from services.gateway import access
from services.gateway.domain import (
    CacheStatus,
    DegradationLevel,
    Lane,
    Principal,
    Priority,
    ResponseReply,
    ResponseRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamStart,
    ToolCallDelta,
    UpstreamAnswer,
    Usage,
)
from services.gateway.fallbacks import STATIC_ANSWERS, LocalLimiter
from services.gateway.pipeline.admit import Admission
from services.gateway.pipeline.plan import Plan, Planner
from services.gateway.pipeline.serve import Ladder
from services.gateway.pipeline.settle import Settlement
from services.gateway.ports import (
    CachePort,
    LedgerPort,
    OutboxPort,
    RateLimiterPort,
    RouterPort,
    TicketPort,
    UpstreamPort,
    UpstreamStreamBrokenError,
)
from services.gateway.queue import AdmissionQueue
from services.gateway.route_leases import RouteLeases


@dataclass(frozen=True)
class FlowConfig:
    """The orchestrator's knobs, from the gateway settings."""

    ratelimit_fail_open: bool
    upstream_timeout_seconds: float
    upstream_breaker: BreakerConfig
    # Seconds an automatic degradation hold lasts on the router; 0 disables them.
    auto_degradation_hold_seconds: float = 0.0
    # After-the-answer reports (reconciles, outcomes) gather this long, at most
    # this many, before they go as one batch call.
    report_batch_interval_seconds: float = 0.02
    report_batch_max_items: int = 256


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
        self._tickets = tickets
        self._clock = clock
        self._downstream_breakers = downstream_breakers
        self._settlement = Settlement(
            ratelimit=ratelimit,
            router=router,
            report_batch_interval_seconds=config.report_batch_interval_seconds,
            report_batch_max_items=config.report_batch_max_items,
            cache=cache,
            ledger=ledger,
            outbox=outbox,
            prices=prices,
            clock=clock,
        )
        leases = RouteLeases(clock)
        self._planner = Planner(
            router,
            clock,
            config.upstream_timeout_seconds,
            leases=leases,
            report_reused=self._settlement.report_reused_route,
            cache=cache,
        )
        self._admission = Admission(
            ratelimit=ratelimit,
            cache=cache,
            ledger=ledger,
            local_limiter=local_limiter,
            ratelimit_fail_open=config.ratelimit_fail_open,
            settlement=self._settlement,
            clock=clock,
        )
        self._ladder = Ladder(
            upstream=upstream,
            router=router,
            queue=queue,
            settlement=self._settlement,
            breaker_config=config.upstream_breaker,
            auto_degradation_hold_seconds=config.auto_degradation_hold_seconds,
            leases=leases,
            clock=clock,
        )
        self.queue = queue
        self.degradation_level = DegradationLevel.FULL_SERVICE

    @property
    def admission(self) -> Admission:
        """The limits and budget stage, for lanes beside the response pipeline."""
        return self._admission

    async def _plan(
        self,
        principal: Principal,
        request: ResponseRequest,
        request_id: str,
        time_remaining: float | None,
    ) -> Plan:
        access.note_request(request.user_id or principal.user_id, request.model)
        plan = await self._planner.plan(principal, request, request_id, time_remaining)
        self.degradation_level = plan.route.degradation_level
        return await self._admission.admit(plan)

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
        settlement = self._settlement
        if plan.cached is not None:
            hit = plan.cached
            settlement.settle(plan.decision, 0)
            await settlement.book(plan, hit.model, hit.usage, hit.status, "")
            answer = UpstreamAnswer(
                hit.output_text,
                hit.model,
                hit.usage,
                truncated=False,
                tool_calls=hit.tool_calls,
                finish_reason=hit.finish_reason,
            )
            return replace(
                self._reply(plan, answer, hit.status, similarity=hit.similarity),
                cache_age_seconds=hit.age_seconds,
                semantic_check=hit.semantic_check,
            )
        if request.asynchronous or plan.route.lane is Lane.QUEUE:
            # Answered later by ticket: through the Batch API, durably queued.
            settlement.settle(plan.decision, 0)
            ticket = await self._tickets.enqueue_ticket(
                plan.principal, replace(request, model=plan.route.model)
            )
            return replace(
                self._reply(plan, _no_answer(plan, ""), plan.cache_status),
                ticket_id=ticket,
                finish_reason=None,
            )
        lane_text = self._lane_text(plan)
        if lane_text is not None:
            return self._reply(plan, _no_answer(plan, lane_text), plan.cache_status)

        budget = await self._admission.check_budget(plan)
        try:
            outcome, shared = await self._ladder.answer(plan, budget)
        except BaseException:
            settlement.settle(plan.decision, 0)
            settlement.release_budget(plan, budget.reservation_id)
            raise
        answer = outcome.answer
        if not outcome.from_upstream:
            settlement.settle(plan.decision, 0)
            settlement.release_budget(plan, budget.reservation_id)
            return self._reply(
                plan,
                replace(answer, model=plan.route.model),
                plan.cache_status,
                level=outcome.level,
            )
        if shared:
            # Answered by an identical request's upstream call: like an exact hit.
            settlement.settle(plan.decision, 0)
            await settlement.book(
                plan,
                answer.model,
                answer.usage,
                CacheStatus.EXACT,
                budget.reservation_id,
            )
            return self._reply(
                plan, answer, CacheStatus.EXACT, similarity=1.0, level=outcome.level
            )
        settlement.settle(plan.decision, answer.usage.total_tokens)
        settlement.store_if_cacheable(plan, answer, outcome.model)
        cost = await settlement.book(
            plan, answer.model, answer.usage, plan.cache_status, budget.reservation_id
        )
        return self._reply(
            plan, answer, plan.cache_status, cost=cost, level=outcome.level
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
        settlement = self._settlement
        if plan.cached is not None:
            hit = plan.cached
            yield replace(
                self._start(plan, hit.model, hit.status, plan.route.degradation_level),
                similarity=hit.similarity,
                cache_age_seconds=hit.age_seconds,
                semantic_check=hit.semantic_check,
            )
            for replayed in _replay(hit.output_text, hit.tool_calls):
                yield replayed
            settlement.settle(plan.decision, 0)
            await settlement.book(plan, hit.model, hit.usage, hit.status, "")
            access.note_usage(hit.usage, 0)
            yield StreamEnd(
                hit.usage,
                0,
                output_truncated=False,
                finish_reason=hit.finish_reason,
                tool_calls=hit.tool_calls,
            )
            return
        lane_text = self._lane_text(plan)
        if lane_text is not None:
            async for static in self._static_stream(plan, lane_text, None):
                yield static
            return

        budget = await self._admission.check_budget(plan)
        try:
            opened = await self._ladder.open_stream(plan, budget)
        except BaseException:
            # Nothing was delivered, so nothing is booked.
            settlement.settle(plan.decision, 0)
            settlement.release_budget(plan, budget.reservation_id)
            raise
        if opened is None:
            outcome = self._ladder.static_outcome(plan)
            settlement.settle(plan.decision, 0)
            settlement.release_budget(plan, budget.reservation_id)
            async for static in self._static_stream(
                plan, outcome.answer.output_text, outcome.level
            ):
                yield static
            return
        choice, started = opened.choice, opened.started
        delivered: list[str] = []
        answer: UpstreamAnswer | None = None
        try:
            yield self._start(plan, choice.model, plan.cache_status, choice.level)
            async for event in opened.events:
                if isinstance(event, str):
                    delivered.append(event)
                    yield StreamDelta(event)
                elif isinstance(event, ToolCallDelta):
                    delivered.append(event.name + event.arguments_delta)
                    yield event
                else:
                    answer = event
        except UpstreamStreamBrokenError as error:
            self._ladder.failed(plan, choice, started, error, opened=True)
            raise UnavailableError(
                "the upstream stream broke; the output delivered so far is partial",
                reason="UPSTREAM_STREAM_BROKEN",
                retry_after=1.0,
                metadata={
                    "partialOutput": "true",
                    "deliveredChars": str(len(error.partial_text)),
                },
            ) from error
        except BaseException as error:
            mapped = self._ladder.failed(plan, choice, started, error, opened=True)
            if mapped is error:
                raise
            raise mapped from error
        finally:
            if answer is None:
                # Broken or abandoned mid-stream: book what was consumed, off the
                # stream's task (a cancelled task must not await).
                consumed = Usage(
                    input_tokens=plan.prompt_tokens,
                    output_tokens=count_tokens("".join(delivered)),
                )
                settlement.book_in_background(
                    plan, choice.model, consumed, budget.reservation_id
                )
                settlement.settle(plan.decision, consumed.total_tokens)
                access.note_usage(consumed, 0)  # the cost is booked afterwards
        if answer is None:
            # The upstream iterator ended without its final event.
            raise UnavailableError(
                "the upstream stream ended without completing",
                reason="UPSTREAM_STREAM_BROKEN",
                retry_after=1.0,
                metadata={"partialOutput": "true"},
            )
        self._ladder.succeeded(plan, choice, started)
        settlement.settle(plan.decision, answer.usage.total_tokens)
        settlement.store_if_cacheable(plan, answer, choice.model)
        cost = await settlement.book(
            plan, answer.model, answer.usage, plan.cache_status, budget.reservation_id
        )
        access.note_usage(answer.usage, cost)
        yield StreamEnd(
            answer.usage,
            cost,
            output_truncated=answer.truncated,
            finish_reason=answer.finish_reason,
            tool_calls=answer.tool_calls,
        )

    async def _static_stream(
        self, plan: Plan, text: str, level: DegradationLevel | None
    ) -> AsyncIterator[StreamEvent]:
        yield self._start(
            plan,
            plan.route.model,
            plan.cache_status,
            plan.route.degradation_level if level is None else level,
        )
        yield StreamDelta(text)
        yield StreamEnd(
            Usage(), 0, output_truncated=False, finish_reason=FinishReason.STOP
        )

    # -- pieces

    def _lane_text(self, plan: Plan) -> str | None:
        """The answer of a lane that does not call the upstream, if this is one."""
        lane = plan.route.lane
        if lane in (Lane.CACHE_ONLY, Lane.STATIC):
            self._settlement.settle(plan.decision, 0)
            return plan.route.fallback_text or STATIC_ANSWERS[plan.request.request_type]
        if lane is Lane.QUEUE:
            # Streams cannot wait for a ticket; CreateResponse gets one instead.
            self._settlement.settle(plan.decision, 0)
            raise UnavailableError(
                "the service is in maintenance; use CreateResponse to be answered "
                "later by ticket",
                reason="MAINTENANCE",
                retry_after=60.0,
            )
        return None

    def _start(
        self,
        plan: Plan,
        model: str,
        status: CacheStatus,
        level: DegradationLevel,
    ) -> StreamStart:
        access.note_served(model, status)
        return StreamStart(
            request_id=plan.request_id,
            model=model,
            deployment=plan.route.deployment,
            cache_status=status,
            degradation_level=level,
            input_truncated=plan.dropped_tokens > 0,
            input_tokens_dropped=plan.dropped_tokens,
            rate_headroom=plan.decision.headroom,
        )

    def _reply(
        self,
        plan: Plan,
        answer: UpstreamAnswer,
        status: CacheStatus,
        *,
        similarity: float = 0.0,
        cost: int = 0,
        level: DegradationLevel | None = None,
    ) -> ResponseReply:
        access.note_served(answer.model, status)
        access.note_usage(answer.usage, cost)
        return ResponseReply(
            output_text=answer.output_text,
            model=answer.model,
            deployment=plan.route.deployment,
            cache_status=status,
            similarity=similarity,
            usage=answer.usage,
            cost_micros=cost,
            request_id=plan.request_id,
            degradation_level=plan.route.degradation_level if level is None else level,
            input_truncated=plan.dropped_tokens > 0,
            input_tokens_dropped=plan.dropped_tokens,
            output_truncated=answer.truncated,
            latency_seconds=self._clock.monotonic() - plan.started,
            tool_calls=answer.tool_calls,
            finish_reason=answer.finish_reason,
            rate_headroom=plan.decision.headroom,
        )

    # -- background work and status

    async def replay_outbox(self) -> int:
        """Deliver waiting usage records, oldest first; returns how many went."""
        return await self._settlement.replay_outbox()

    async def drain_background(self) -> None:
        """Wait for background work (cache writes, reconciles) to finish."""
        await self._settlement.drain()

    def breakers(self) -> list[BreakerSnapshot]:
        """Every breaker's state: downstream services, then upstream models."""
        return [
            *(breaker.snapshot() for breaker in self._downstream_breakers),
            *self._ladder.snapshots(),
        ]

    async def outbox_depth(self) -> int:
        """Usage records waiting for the ledger."""
        return await self._settlement.outbox_depth()

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


def _no_answer(plan: Plan, text: str) -> UpstreamAnswer:
    """A text the gateway answers itself (static, busy): no tokens, no upstream."""
    return UpstreamAnswer(text, plan.route.model, Usage(), truncated=False)


def _replay(text: str, tool_calls: tuple[ToolCall, ...]) -> list[StreamEvent]:
    """A cached answer as stream events: its text, then each call in one piece."""
    events: list[StreamEvent] = [StreamDelta(text)] if text or not tool_calls else []
    events.extend(
        ToolCallDelta(index, call.id, call.name, call.arguments)
        for index, call in enumerate(tool_calls)
    )
    return events
