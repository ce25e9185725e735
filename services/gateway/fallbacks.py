"""What the gateway does on its own when a downstream cannot answer.

* :class:`LocalLimiter`: a conservative per-user requests-per-minute bucket used
  while ratelimit is unreachable and the policy is fail-open.
* :func:`local_route`: the route table used while the router is unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.clock import Clock
from services.gateway.domain import (
    DegradationLevel,
    Lane,
    Priority,
    RateDecision,
    RequestType,
    Route,
)

# Request-type budgets (max input tokens, max output tokens): the seed's token budget
# controller, the same defaults as the router's table.
LOCAL_BUDGETS: dict[RequestType, tuple[int, int]] = {
    RequestType.CHAT: (2000, 500),
    RequestType.SUMMARIZE: (8000, 300),
    RequestType.ANALYZE: (4000, 2000),
    RequestType.CLASSIFY: (500, 50),
    RequestType.GENERATE: (1000, 4000),
}
LOCAL_MODELS: dict[Priority, str] = {
    Priority.CRITICAL: "gpt-4.1",
    Priority.REALTIME: "gpt-4.1",
    Priority.STANDARD: "gpt-4.1-mini",
    Priority.BATCH: "gpt-4.1-mini",
    Priority.LOW: "gpt-4.1-nano",
}
LOCAL_FALLBACK_ORDER = ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
# The last rung before maintenance (seed section 6, level 3): a pre-written answer per
# request type, used when every upstream circuit is open and the router gave none.
# It lives in the gateway because it must work when the router is down too.
STATIC_ANSWERS: dict[RequestType, str] = {
    RequestType.CHAT: (
        "We're experiencing high demand and can't answer right now. Please try again "
        "in a few minutes, or see our help centre for common questions."
    ),
    RequestType.SUMMARIZE: (
        "Summaries are temporarily unavailable. Please try again in a few minutes."
    ),
    RequestType.ANALYZE: (
        "Analysis is temporarily unavailable. Please try again in a few minutes."
    ),
    RequestType.CLASSIFY: "unavailable",
    RequestType.GENERATE: (
        "Content generation is temporarily unavailable. Please try again later."
    ),
}


def local_route(
    priority: Priority,
    request_type: RequestType,
    requested_model: str,
    max_output_tokens: int,
) -> Route:
    """A route decided without the router: priority to model, default budgets."""
    model = (
        requested_model
        if requested_model and requested_model != "auto"
        else LOCAL_MODELS[priority]
    )
    input_cap, output_budget = LOCAL_BUDGETS[request_type]
    cheaper = (
        LOCAL_FALLBACK_ORDER[LOCAL_FALLBACK_ORDER.index(model) + 1 :]
        if model in LOCAL_FALLBACK_ORDER
        else ()
    )
    return Route(
        model=model,
        deployment="local-default",
        lane=Lane.SYNC,
        max_output_tokens=(
            min(max_output_tokens, output_budget)
            if max_output_tokens
            else output_budget
        ),
        input_token_cap=input_cap,
        degradation_level=DegradationLevel.FULL_SERVICE,
        fallback_models=cheaper,
    )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class LocalLimiter:
    """Per-user requests-per-minute buckets in this process only."""

    def __init__(self, rpm_per_user: int, clock: Clock, max_keys: int = 100_000):
        self._rate = rpm_per_user / 60.0
        self._capacity = float(rpm_per_user)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> RateDecision:
        """Take one request from ``key``'s bucket, or say when one will be there."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                # Bounded memory: forget the oldest key (dicts keep insertion order).
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
        bucket.tokens = min(
            self._capacity, bucket.tokens + (now - bucket.updated) * self._rate
        )
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return RateDecision(allowed=True)
        return RateDecision(
            allowed=False,
            retry_after_seconds=(1.0 - bucket.tokens) / self._rate,
            denied_subject=f"user:{key}",
            denied_description=(
                f"local fallback limit of {int(self._capacity)} requests per minute "
                "exceeded (ratelimit service unreachable)"
            ),
        )
