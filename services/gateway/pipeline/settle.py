"""After the answer: reconcile the reservation, write the cache, book the ledger.

Everything here runs off the response path or cannot fail the request: a ledger
that cannot answer gets the record through the durable outbox, replayed in order;
a record the ledger refuses is dead-lettered for an operator, never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from services.core.clock import Clock
from services.core.errors import TollgateError
from services.core.pricing import PricingTable, TokenUsage, UnknownModelError
from services.gateway.domain import (
    CacheKeyParts,
    CacheStatus,
    Lane,
    RateDecision,
    UpstreamAnswer,
    Usage,
    UsageRecord,
)
from services.gateway.pipeline.batcher import Batcher
from services.gateway.pipeline.plan import Plan
from services.gateway.ports import (
    CachePort,
    DependencyUnavailableError,
    LedgerPort,
    OutboxPort,
    OutcomeReport,
    RateLimiterPort,
    ReconcileItem,
    ReusedRoutes,
    RouterPort,
)
from services.gateway.route_leases import ReusedRoute

_log = structlog.get_logger("tollgate.gateway")

OUTBOX_BATCH = 100


class Settlement:
    """Background work and the ledger; owns the set of background tasks."""

    def __init__(
        self,
        *,
        ratelimit: RateLimiterPort,
        router: RouterPort,
        cache: CachePort,
        ledger: LedgerPort,
        outbox: OutboxPort,
        prices: PricingTable,
        clock: Clock,
        report_batch_interval_seconds: float = 0.02,
        report_batch_max_items: int = 256,
    ) -> None:
        self._ratelimit = ratelimit
        self._router = router
        self._reconciles = Batcher(
            self._reconcile,
            interval_seconds=report_batch_interval_seconds,
            max_items=report_batch_max_items,
        )
        self._outcomes = Batcher(
            self._send_outcomes,
            interval_seconds=report_batch_interval_seconds,
            max_items=report_batch_max_items,
        )
        self._cache = cache
        self._ledger = ledger
        self._outbox = outbox
        self._prices = prices
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()
        self.backoff_factors: dict[str, float] = {}

    # -- rate-limit reservations and reports

    def settle(self, decision: RateDecision, actual_tokens: int) -> None:
        """Settle a reservation with the tokens actually used, in the next batch."""
        if decision.reservation_id:
            self._reconciles.add(ReconcileItem(decision.reservation_id, actual_tokens))

    async def _reconcile(self, items: Sequence[ReconcileItem]) -> None:
        # As per request before batching: ratelimit down, the reservations
        # expire as estimated (their TTL bounds the harm).
        try:
            await self._ratelimit.reconcile_batch(items)
        except DependencyUnavailableError:
            _log.info("reconcile_skipped_ratelimit_unavailable", items=len(items))

    def report_outcome(self, outcome: OutcomeReport) -> None:
        """Feed the router's deployment metrics with one call, in the next batch."""
        self._outcomes.add(outcome)

    def report_reused_route(self, reused: ReusedRoute) -> None:
        """Count a decision reused under a lease at the router, in the next batch."""
        self._outcomes.add(reused)

    async def _send_outcomes(
        self, items: Sequence[OutcomeReport | ReusedRoute]
    ) -> None:
        outcomes: list[OutcomeReport] = []
        tallies: dict[tuple[str, Lane], list[int]] = {}
        for item in items:
            if isinstance(item, OutcomeReport):
                outcomes.append(item)
                continue
            tally = tallies.setdefault((item.tier, item.lane), [0, 0, 0])
            tally[0] += 1
            tally[1] += item.routed_cost_micros
            tally[2] += item.premium_cost_micros
        reused = [
            ReusedRoutes(tier, lane, decisions, routed, premium)
            for (tier, lane), (decisions, routed, premium) in tallies.items()
        ]
        try:
            await self._router.record_outcomes(outcomes, reused)
        except DependencyUnavailableError:
            _log.info("outcome_report_skipped", items=len(items))

    def report_throttle(self, model: str, retry_after: float) -> None:
        """Feed the limiter's adaptive backoff with an upstream 429."""
        self.spawn(self._report_throttle(model, retry_after))

    def report_success(self, model: str) -> None:
        """Ease the adaptive backoff of a model that is being throttled."""
        if self.backoff_factors.get(model, 1.0) > 1.0:
            self.spawn(self._report_success(model))

    async def _report_throttle(self, model: str, retry_after: float) -> None:
        try:
            await self._ratelimit.report_upstream(model, True, retry_after)
            self.backoff_factors[model] = min(
                8.0, self.backoff_factors.get(model, 1.0) * 2
            )
        except DependencyUnavailableError:
            _log.info("throttle_report_skipped")

    async def _report_success(self, model: str) -> None:
        try:
            await self._ratelimit.report_upstream(model, False, 0.0)
            self.backoff_factors[model] = max(
                1.0, self.backoff_factors.get(model, 1.0) * 0.9
            )
        except DependencyUnavailableError:
            _log.info("success_report_skipped")

    # -- budget reservations

    def release_budget(self, plan: Plan, reservation_id: str) -> None:
        """Release the budget reservation of a request that books nothing.

        In the background: it may run on a cancelled task. A ledger that cannot
        answer leaves the reservation to expire, which bounds the harm.
        """
        if reservation_id:
            self.spawn(self._release_budget(plan.request_id, reservation_id))

    async def _release_budget(self, request_id: str, reservation_id: str) -> None:
        try:
            await self._ledger.release_budget(request_id, reservation_id)
        except (DependencyUnavailableError, TollgateError):
            _log.info("budget_release_skipped")

    # -- the cache write

    def store_if_cacheable(
        self, plan: Plan, answer: UpstreamAnswer, answered_by: str
    ) -> None:
        """Cache a complete answer of the routed model, off the response path.

        A fallback's cheaper answer must not outlive the outage as an exact hit
        under the routed model's key. Tool-call answers go too: the cache keeps
        them for the exact tier only.
        """
        if (
            plan.cache_status is CacheStatus.MISS
            and not answer.truncated
            and answered_by == plan.route.model
        ):
            self.spawn(self._store(plan.request_id, plan.key, answer))

    async def _store(
        self, request_id: str, key: CacheKeyParts, answer: UpstreamAnswer
    ) -> None:
        try:
            await self._cache.store(request_id, key, answer)
        except DependencyUnavailableError:
            _log.info("cache_store_skipped")

    # -- the ledger

    async def book(
        self,
        plan: Plan,
        model: str,
        usage: Usage,
        cache_status: CacheStatus,
        budget_reservation_id: str,
    ) -> int:
        """Book one request's usage; returns its cost (estimated if outboxed)."""
        request = plan.request
        record = UsageRecord(
            request_id=plan.request_id,
            principal=plan.principal,
            model=model,
            requested_model=request.model if request.model != "auto" else "",
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

    def book_in_background(
        self, plan: Plan, model: str, usage: Usage, budget_reservation_id: str
    ) -> None:
        """Book off the current task (a cancelled stream must not await)."""
        self.spawn(self._book_quietly(plan, model, usage, budget_reservation_id))

    async def _book_quietly(
        self, plan: Plan, model: str, usage: Usage, budget_reservation_id: str
    ) -> None:
        await self.book(plan, model, usage, plan.cache_status, budget_reservation_id)

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

    async def replay_outbox(self) -> int:
        """Deliver waiting usage records, oldest first; returns how many went.

        The oldest goes alone: while the ledger is down, one call finds out. When
        it is booked, the rest are given to the ledger at once, in order, and the
        costs client carries them together in RecordBatch calls, so a backlog
        after an outage drains in a few calls instead of one per record.
        """
        pending = await self._outbox.pending(OUTBOX_BATCH)
        delivered = await self._replay(pending[:1])
        if delivered:
            delivered += await self._replay(pending[1:])
        if delivered:
            _log.info("outbox_replayed", records=delivered)
        return delivered

    async def _replay(self, pending: Sequence[tuple[int, UsageRecord]]) -> int:
        """Book ``pending`` concurrently; delete what was booked or dead-lettered."""
        outcomes = await asyncio.gather(
            *(self._ledger.record(record) for _, record in pending),
            return_exceptions=True,
        )
        delivered = 0
        for (sequence, record), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, DependencyUnavailableError):
                continue  # stays for the next replay
            if isinstance(outcome, TollgateError):
                await self._outbox.dead_letter(record, outcome.reason)
                _log.error(
                    "ledger_rejected_record_dead_lettered", reason=outcome.reason
                )
            elif isinstance(outcome, BaseException):
                raise outcome
            await self._outbox.delete(sequence)
            delivered += 1
        return delivered

    async def outbox_depth(self) -> int:
        """Usage records waiting for the ledger."""
        return await self._outbox.depth()

    # -- background tasks

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, keeping a reference until it ends."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Send the pending reports; wait for background work to finish."""
        await self._reconciles.drain()
        await self._outcomes.drain()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
