"""The gateway's ports: one small protocol per dependency.

``clients.py`` implements the four downstream ports over gRPC, ``upstream.py`` the
upstream over the ``openai`` SDK, ``adapters/outbox.py`` the durable outbox. Each
adapter raises :class:`DependencyUnavailableError` when its dependency cannot answer, so
the orchestrator applies one written policy per dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.gateway.domain import (
    BudgetVerdict,
    CachedAnswer,
    CacheKeyParts,
    DegradationLevel,
    Lane,
    Principal,
    RateDecision,
    RecordResult,
    ResponseRequest,
    Route,
    ToolCallDelta,
    UpstreamAnswer,
    UpstreamCall,
    UsageRecord,
)


class DependencyUnavailableError(Exception):
    """A dependency could not answer (unreachable, timed out or breaker open)."""

    def __init__(self, dependency: str, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.dependency = dependency
        self.retry_after = retry_after


class UpstreamThrottledError(DependencyUnavailableError):
    """The upstream answered 429 on every attempt."""


class UpstreamStreamBrokenError(DependencyUnavailableError):
    """The upstream stream broke after some text was delivered."""

    def __init__(self, partial_text: str) -> None:
        super().__init__("upstream", "the upstream stream broke")
        self.partial_text = partial_text


@dataclass(frozen=True, slots=True)
class ReconcileItem:
    """One reservation to settle with the tokens actually used."""

    reservation_id: str
    actual_tokens: int


@dataclass(frozen=True, slots=True)
class OutcomeReport:
    """How one routed upstream call went."""

    deployment: str
    model: str
    latency_seconds: float
    error: bool


@dataclass(frozen=True, slots=True)
class ReusedRoutes:
    """Decisions of one tier and lane reused under leases, for the router's stats."""

    tier: str
    lane: Lane
    decisions: int
    routed_cost_micros: int
    premium_cost_micros: int


class RateLimiterPort(Protocol):
    """The ratelimit service."""

    async def acquire(
        self, request_id: str, principal: Principal, model: str, tokens: int
    ) -> RateDecision:
        """Admit or deny one request, debiting every layer atomically."""
        ...

    async def reconcile(self, reservation_id: str, actual_tokens: int) -> None:
        """Settle a reservation with the tokens actually used."""
        ...

    async def reconcile_batch(self, items: Sequence[ReconcileItem]) -> None:
        """Settle several reservations in one call, each as :meth:`reconcile`."""
        ...

    async def report_upstream(
        self, model: str, throttled: bool, retry_after: float
    ) -> None:
        """Feed the adaptive backoff with an upstream outcome."""
        ...


class CachePort(Protocol):
    """The cache service."""

    async def lookup(self, request_id: str, key: CacheKeyParts) -> CachedAnswer | None:
        """Find a cached answer, or None on a miss."""
        ...

    async def store(
        self, request_id: str, key: CacheKeyParts, answer: UpstreamAnswer
    ) -> None:
        """Cache a complete answer."""
        ...


class RouterPort(Protocol):
    """The router service."""

    async def route(
        self,
        request_id: str,
        principal: Principal,
        request: ResponseRequest,
        input_tokens: int,
    ) -> Route:
        """Choose model, deployment, lane and token budget."""
        ...

    async def record_outcomes(
        self, outcomes: Sequence[OutcomeReport], reused: Sequence[ReusedRoutes] = ()
    ) -> None:
        """Feed the deployments' metrics and the reused decisions, in one call."""
        ...

    async def hold_degradation(
        self, level: DegradationLevel, hold_seconds: float, reason: str
    ) -> None:
        """Raise the level for every replica for ``hold_seconds``; it then lapses."""
        ...


class LedgerPort(Protocol):
    """The costs service."""

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book one request's usage (idempotent on its request id)."""
        ...

    async def check_budget(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
    ) -> BudgetVerdict:
        """Reserve the worst-case cost against every budget of the principal."""
        ...

    async def release_budget(self, request_id: str, reservation_id: str) -> None:
        """Release a budget reservation of a request that books nothing."""
        ...


class UpstreamPort(Protocol):
    """The model provider."""

    async def create(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> UpstreamAnswer:
        """Ask the model for an answer."""
        ...

    def stream(
        self, call: UpstreamCall, timeout_seconds: float
    ) -> AsyncIterator[str | ToolCallDelta | UpstreamAnswer]:
        """Stream the answer: text and tool-call deltas, then the whole answer.

        Raises :class:`UpstreamStreamBrokenError` when the stream breaks after text
        was delivered; failures before the first delta are retried like ``create``.
        """
        ...


class TicketPort(Protocol):
    """The durable queue of requests answered later (maintenance, asynchronous)."""

    async def enqueue_ticket(
        self, principal: Principal, request: ResponseRequest
    ) -> str:
        """Accept one request; returns the ticket to fetch its answer with."""
        ...


class OutboxPort(Protocol):
    """Durable storage for usage records the ledger has not acknowledged."""

    async def put(self, record: UsageRecord) -> None:
        """Persist a record before acknowledging the request."""
        ...

    async def pending(self, limit: int) -> list[tuple[int, UsageRecord]]:
        """The oldest records not yet delivered, with their sequence numbers."""
        ...

    async def delete(self, sequence: int) -> None:
        """Forget a delivered record."""
        ...

    async def depth(self) -> int:
        """How many records wait."""
        ...

    async def dead_letter(self, record: UsageRecord, reason: str) -> None:
        """Keep a record the ledger refused, for an operator to look at."""
        ...
