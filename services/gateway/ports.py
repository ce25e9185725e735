"""The gateway's ports: one small protocol per dependency.

``clients.py`` implements the four downstream ports over gRPC, ``upstream.py`` the
upstream over the ``openai`` SDK, ``adapters/outbox.py`` the durable outbox. Each
adapter raises :class:`DependencyUnavailableError` when its dependency cannot answer, so
the orchestrator applies one written policy per dependency.
"""

from __future__ import annotations

from typing import Protocol

from services.gateway.domain import (
    CachedAnswer,
    CacheKeyParts,
    Principal,
    RateDecision,
    RecordResult,
    ResponseRequest,
    Route,
    UpstreamAnswer,
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


class LedgerPort(Protocol):
    """The costs service."""

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book one request's usage (idempotent on its request id)."""
        ...


class UpstreamPort(Protocol):
    """The model provider."""

    async def create(
        self,
        *,
        model: str,
        instructions: str,
        input_text: str,
        max_output_tokens: int,
        temperature: float | None,
        timeout_seconds: float,
    ) -> UpstreamAnswer:
        """Ask the model for an answer."""
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
