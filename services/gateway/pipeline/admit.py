"""Admission: the rate limit and the cache lookup together, then the budget.

A throttled request is refused even when its answer is cached (the flowchart's
order); the limiter's failure policy is fail-open to a local limiter or
fail-closed, by config; a cache that cannot answer is a miss; while the ledger
cannot answer, budgets are checked against the gateway's local spend estimate
(``services/gateway/budget_estimate.py``, the written policy) and pass only where
there is nothing to estimate from; records wait in the outbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import structlog

from services.core.clock import Clock
from services.core.errors import (
    QuotaViolation,
    ResourceExhaustedError,
    UnavailableError,
)
from services.gateway.domain import (
    BudgetVerdict,
    CachedAnswer,
    CacheKeyParts,
    CacheStatus,
    Principal,
    RateDecision,
    RateHeadroom,
)
from services.gateway.fallbacks import LocalLimiter
from services.gateway.pipeline.plan import Plan
from services.gateway.pipeline.settle import Settlement
from services.gateway.ports import (
    CachePort,
    DependencyUnavailableError,
    LedgerPort,
    RateLimiterPort,
)

_log = structlog.get_logger("tollgate.gateway")


def headroom_metadata(headroom: tuple[RateHeadroom, ...]) -> dict[str, str]:
    """The limits' headroom as ErrorInfo metadata (``limitRequests``, ...)."""
    metadata: dict[str, str] = {}
    for item in headroom:
        metric = item.metric.capitalize()
        metadata[f"limit{metric}"] = str(item.limit_per_minute)
        metadata[f"remaining{metric}"] = str(item.remaining)
        metadata[f"reset{metric}Ms"] = str(round(item.reset_seconds * 1000))
    return metadata


class Admission:
    """Limits, cache lookup and budget for a planned request."""

    def __init__(
        self,
        *,
        ratelimit: RateLimiterPort,
        cache: CachePort,
        ledger: LedgerPort,
        local_limiter: LocalLimiter,
        ratelimit_fail_open: bool,
        settlement: Settlement,
        clock: Clock,
    ) -> None:
        self._ratelimit = ratelimit
        self._cache = cache
        self._ledger = ledger
        self._local_limiter = local_limiter
        self._fail_open = ratelimit_fail_open
        self._settlement = settlement
        self._clock = clock

    async def admit(self, plan: Plan) -> Plan:
        """Acquire the rate limit and look the answer up, concurrently.

        Raises:
            ResourceExhaustedError: the limiter denied the request (RATE_LIMITED).
        """
        estimated = plan.prompt_tokens + plan.route.max_output_tokens
        decision, (cached, cache_status) = await asyncio.gather(
            self.acquire(plan.request_id, plan.principal, plan.route.model, estimated),
            self._lookup(plan.request_id, plan.key, plan.request.cache_bypass),
        )
        return replace(
            plan, decision=decision, cached=cached, cache_status=cache_status
        )

    async def acquire(
        self, request_id: str, principal: Principal, model: str, tokens: int
    ) -> RateDecision:
        """Admit ``tokens`` for ``principal`` on ``model``, by the limiter's policy.

        Raises:
            ResourceExhaustedError: the limiter denied the request (RATE_LIMITED),
                with each metric's headroom in its metadata.
            UnavailableError: the limiter is unreachable and the policy is closed.
        """
        decision = await self._decide(request_id, principal, model, tokens)
        if not decision.allowed:
            raise ResourceExhaustedError(
                f"rate limit exceeded: {decision.denied_description}",
                reason="RATE_LIMITED",
                retry_after=decision.retry_after_seconds,
                violations=[
                    QuotaViolation(decision.denied_subject, decision.denied_description)
                ],
                metadata=headroom_metadata(decision.headroom),
            )
        return decision

    async def _decide(
        self, request_id: str, principal: Principal, model: str, tokens: int
    ) -> RateDecision:
        try:
            return await self._ratelimit.acquire(request_id, principal, model, tokens)
        except DependencyUnavailableError as error:
            if not self._fail_open:
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

    async def check_budget(self, plan: Plan) -> BudgetVerdict:
        """Reserve the worst-case cost against the principal's budgets.

        Raises:
            ResourceExhaustedError: a hard budget is spent (BUDGET_EXCEEDED).
        """
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
            self._settlement.settle(plan.decision, 0)
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
