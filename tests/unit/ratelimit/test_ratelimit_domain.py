from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.core.clock import FakeClock
from services.core.errors import InvalidArgumentError
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.domain import (
    AcquireResult,
    BucketStatus,
    Caller,
    RateLimiter,
    UpstreamOutcome,
)
from services.ratelimit.limits import RateLimits, RateRule
from services.ratelimit.ports import BucketKey, Layer, Metric

MODEL = "gpt-4.1"
FREE_USER = Caller(tenant_id="t1", service="chat", user_id="u1", user_tier="free")


@dataclass
class Harness:
    limiter: RateLimiter
    clock: FakeClock

    async def acquire_many(
        self, count: int, caller: Caller = FREE_USER, tokens: int = 0
    ) -> list[AcquireResult]:
        return [await self.limiter.acquire(caller, MODEL, tokens) for _ in range(count)]


def _harness(limits: RateLimits | None = None, ttl: float = 300.0) -> Harness:
    clock = FakeClock()
    limiter = RateLimiter(
        MemoryCounterStore(clock),
        limits or RateLimits(),
        clock,
        reservation_ttl_seconds=ttl,
    )
    return Harness(limiter, clock)


def _with_model(rpm: int | None = None, tpm: int | None = None) -> RateLimits:
    return RateLimits(models={MODEL: RateRule(rpm=rpm, tpm=tpm)})


def _bucket(result: AcquireResult, layer: Layer, metric: Metric) -> BucketStatus:
    return next(
        b
        for b in result.buckets
        if b.bucket.layer is layer and b.bucket.metric is metric
    )


async def test_free_user_gets_twenty_then_waits_three_seconds() -> None:
    harness = _harness()

    admitted = await harness.acquire_many(20)
    denied = await harness.limiter.acquire(FREE_USER, MODEL, 0)

    assert all(result.allowed for result in admitted)
    assert [r.buckets[0].remaining for r in admitted[:3]] == [19, 18, 17]
    assert not denied.allowed
    assert denied.retry_after == 3.0
    assert denied.reservation_id == ""
    assert denied.denied_by == BucketStatus(
        bucket=BucketKey(Layer.USER, "t1:u1", Metric.REQUESTS),
        limit_per_minute=20,
        effective_limit_per_minute=20,
        capacity=20,
        remaining=0,
    )


async def test_refill_after_retry_after_admits_exactly_one_more() -> None:
    harness = _harness()
    await harness.acquire_many(20)

    harness.clock.advance(2.999)
    assert not (await harness.limiter.acquire(FREE_USER, MODEL, 0)).allowed
    harness.clock.advance(0.001)
    again = await harness.limiter.acquire(FREE_USER, MODEL, 0)
    after = await harness.limiter.acquire(FREE_USER, MODEL, 0)

    assert again.allowed
    assert not after.allowed
    assert after.retry_after == 3.0


async def test_partial_refill_shortens_retry_after() -> None:
    harness = _harness()
    await harness.acquire_many(20)

    harness.clock.advance(1.0)
    denied = await harness.limiter.acquire(FREE_USER, MODEL, 0)

    assert denied.retry_after == 2.0


async def test_bucket_never_refills_beyond_capacity() -> None:
    harness = _harness()
    await harness.acquire_many(5)

    harness.clock.advance(3600)
    results = await harness.acquire_many(21)

    assert [r.allowed for r in results] == [True] * 20 + [False]


async def test_burst_multiplier_scales_capacity() -> None:
    harness = _harness(RateLimits(burst_multiplier=1.5))

    results = await harness.acquire_many(31)

    assert [r.allowed for r in results] == [True] * 30 + [False]
    assert results[0].buckets[0].capacity == 30
    assert results[0].buckets[0].limit_per_minute == 20


async def test_paid_tier_gets_one_hundred() -> None:
    harness = _harness()
    paid = Caller(tenant_id="t1", user_id="u2", user_tier="paid")

    results = await harness.acquire_many(101, caller=paid)

    assert [r.allowed for r in results] == [True] * 100 + [False]
    assert results[-1].retry_after == 0.6


@pytest.mark.parametrize("tier", ["", "platinum"])
async def test_empty_or_unknown_tier_uses_default_tier(tier: str) -> None:
    harness = _harness()
    caller = Caller(tenant_id="t1", user_id="u3", user_tier=tier)

    results = await harness.acquire_many(21, caller=caller)

    assert [r.allowed for r in results] == [True] * 20 + [False]


async def test_configured_default_tier_applies() -> None:
    limits = RateLimits(
        default_tier="trial", tiers={"trial": RateRule(rpm=2), "paid": RateRule(rpm=9)}
    )
    harness = _harness(limits)
    caller = Caller(tenant_id="t1", user_id="u1", user_tier="free")

    results = await harness.acquire_many(3, caller=caller)

    assert [r.allowed for r in results] == [True, True, False]
    assert results[-1].retry_after == 30.0


async def test_tenants_and_users_are_isolated() -> None:
    harness = _harness()
    await harness.acquire_many(20)

    other_tenant = await harness.limiter.acquire(
        Caller(tenant_id="t2", user_id="u1"), MODEL, 0
    )
    other_user = await harness.limiter.acquire(
        Caller(tenant_id="t1", user_id="u2"), MODEL, 0
    )

    assert other_tenant.allowed
    assert other_tenant.buckets[0].bucket.key == "t2:u1"
    assert other_tenant.buckets[0].remaining == 19
    assert other_user.allowed


async def test_caller_without_user_is_limited_per_service() -> None:
    harness = _harness()
    chat = Caller(tenant_id="t1", service="chat")
    batch = Caller(tenant_id="t1", service="batch")

    chat_results = await harness.acquire_many(21, caller=chat)
    batch_result = await harness.limiter.acquire(batch, MODEL, 0)

    assert chat_results[0].buckets[0].bucket.key == "t1:chat"
    assert not chat_results[-1].allowed
    assert batch_result.allowed


async def test_model_buckets_are_debited_with_requests_and_tokens() -> None:
    harness = _harness(_with_model(rpm=60, tpm=10_000))

    result = await harness.limiter.acquire(FREE_USER, MODEL, 1_500)

    assert result.allowed
    assert [(b.bucket.layer, b.bucket.metric, b.remaining) for b in result.buckets] == [
        (Layer.USER, Metric.REQUESTS, 19),
        (Layer.GLOBAL, Metric.REQUESTS, 59),
        (Layer.GLOBAL, Metric.TOKENS, 8_500),
    ]


async def test_denial_debits_nothing() -> None:
    harness = _harness(_with_model(tpm=10_000))
    await harness.limiter.acquire(FREE_USER, MODEL, 9_000)

    denied = await harness.limiter.acquire(FREE_USER, MODEL, 2_000)

    assert not denied.allowed
    assert _bucket(denied, Layer.USER, Metric.REQUESTS).remaining == 19
    assert _bucket(denied, Layer.GLOBAL, Metric.TOKENS).remaining == 1_000
    assert denied.denied_by is not None
    assert denied.denied_by.bucket == BucketKey(Layer.GLOBAL, MODEL, Metric.TOKENS)
    # 1,000 tokens missing at 10,000 per minute.
    assert denied.retry_after == 6.0


async def test_denied_by_is_the_bucket_with_the_longest_wait() -> None:
    harness = _harness(_with_model(rpm=20, tpm=10_000))
    await harness.limiter.acquire(FREE_USER, MODEL, 10_000)
    await harness.acquire_many(19)

    denied = await harness.limiter.acquire(FREE_USER, MODEL, 5_000)

    # The user and model requests buckets need 3 s; the tokens bucket needs 30 s.
    assert denied.retry_after == 30.0
    assert denied.denied_by is not None
    assert denied.denied_by.bucket.metric is Metric.TOKENS


async def test_estimate_above_capacity_is_invalid() -> None:
    harness = _harness(_with_model(tpm=10_000))

    with pytest.raises(InvalidArgumentError) as caught:
        await harness.limiter.acquire(FREE_USER, MODEL, 10_001)

    assert [v.field for v in caught.value.violations] == ["estimated_tokens"]


async def test_reservation_expires_after_ttl() -> None:
    harness = _harness(ttl=300.0)

    result = await harness.limiter.acquire(FREE_USER, MODEL, 0)

    assert result.reservation_id.startswith("rsv_")
    assert result.reservation_expires_at == harness.clock.now() + 300.0


async def test_reconcile_refunds_unused_tokens() -> None:
    harness = _harness(_with_model(tpm=10_000))
    result = await harness.limiter.acquire(FREE_USER, MODEL, 1_000)

    settled = await harness.limiter.reconcile(result.reservation_id, 400)
    status = await harness.limiter.status(None, MODEL)

    assert settled.settled
    assert settled.refunded_tokens == 600
    assert status.buckets[0].remaining == 9_600


async def test_reconcile_charges_extra_tokens_even_below_zero() -> None:
    harness = _harness(_with_model(tpm=10_000))
    result = await harness.limiter.acquire(FREE_USER, MODEL, 9_000)

    settled = await harness.limiter.reconcile(result.reservation_id, 11_000)
    after = await harness.limiter.acquire(FREE_USER, MODEL, 1)

    assert settled.refunded_tokens == -2_000
    assert not after.allowed
    # The bucket is 1,000 in debt: 1,001 tokens at 10,000 per minute.
    assert after.retry_after == 6.006


async def test_reconcile_without_tokens_buckets_settles_nothing() -> None:
    harness = _harness()
    result = await harness.limiter.acquire(FREE_USER, MODEL, 1_000)

    settled = await harness.limiter.reconcile(result.reservation_id, 10)

    assert settled.settled
    assert settled.refunded_tokens == 0


async def test_reconcile_unknown_or_repeated_reservation() -> None:
    harness = _harness(_with_model(tpm=10_000))
    result = await harness.limiter.acquire(FREE_USER, MODEL, 1_000)
    await harness.limiter.reconcile(result.reservation_id, 0)

    repeated = await harness.limiter.reconcile(result.reservation_id, 0)
    unknown = await harness.limiter.reconcile("rsv_nope", 0)
    status = await harness.limiter.status(None, MODEL)

    assert not repeated.settled
    assert not unknown.settled
    assert status.buckets[0].remaining == 10_000


async def test_expired_reservation_stands_as_estimated() -> None:
    harness = _harness(_with_model(tpm=10_000), ttl=300.0)
    early = await harness.limiter.acquire(FREE_USER, MODEL, 1_000)
    harness.clock.advance(299.0)
    late = await harness.limiter.acquire(FREE_USER, MODEL, 1_000)
    harness.clock.advance(1.0)

    expired = await harness.limiter.reconcile(early.reservation_id, 0)
    live = await harness.limiter.reconcile(late.reservation_id, 0)

    assert not expired.settled
    assert live.settled
    assert live.refunded_tokens == 1_000


async def test_throttles_double_backoff_up_to_eight() -> None:
    harness = _harness()

    factors = [
        (
            await harness.limiter.report_upstream(
                MODEL, UpstreamOutcome.THROTTLED, None
            )
        ).factor
        for _ in range(5)
    ]

    assert factors == [2.0, 4.0, 8.0, 8.0, 8.0]


async def test_successes_decay_backoff_down_to_one() -> None:
    harness = _harness()
    await harness.limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, None)

    first = await harness.limiter.report_upstream(MODEL, UpstreamOutcome.SUCCESS, None)
    factors = [
        (
            await harness.limiter.report_upstream(MODEL, UpstreamOutcome.SUCCESS, None)
        ).factor
        for _ in range(10)
    ]
    status = await harness.limiter.status(None, "")

    assert first.factor == pytest.approx(1.8)
    assert factors[-1] == 1.0
    assert factors == sorted(factors, reverse=True)
    assert status.backoffs == ()


async def test_backoff_divides_the_global_rate() -> None:
    harness = _harness(_with_model(rpm=60))
    paid = Caller(tenant_id="t1", user_id="u2", user_tier="paid")
    for _ in range(2):
        await harness.limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, None)
    await harness.acquire_many(60, caller=paid)

    denied = await harness.limiter.acquire(paid, MODEL, 0)

    assert denied.denied_by is not None
    assert denied.denied_by.limit_per_minute == 60
    assert denied.denied_by.effective_limit_per_minute == 15
    # One request at 15 per minute.
    assert denied.retry_after == 4.0


async def test_upstream_retry_after_pauses_the_model() -> None:
    harness = _harness(_with_model(rpm=60))
    reported_at = harness.clock.now()
    backoff = await harness.limiter.report_upstream(
        MODEL, UpstreamOutcome.THROTTLED, 10.0
    )

    paused = await harness.limiter.acquire(FREE_USER, MODEL, 0)
    other_model = await harness.limiter.acquire(FREE_USER, "gpt-4.1-mini", 0)
    harness.clock.advance(10.0)
    resumed = await harness.limiter.acquire(FREE_USER, MODEL, 0)

    assert backoff.paused_until == reported_at + 10.0
    assert not paused.allowed
    assert paused.retry_after == 10.0
    assert paused.denied_by == BucketStatus(
        bucket=BucketKey(Layer.GLOBAL, MODEL, Metric.REQUESTS),
        limit_per_minute=60,
        effective_limit_per_minute=0,
        capacity=60,
        remaining=0,
    )
    assert paused.buckets == ()
    assert other_model.allowed
    # The paused request debited nothing from the user's bucket.
    assert other_model.buckets[0].remaining == 19
    assert resumed.allowed


async def test_shorter_retry_after_does_not_shorten_a_pause() -> None:
    harness = _harness()
    await harness.limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, 30.0)

    backoff = await harness.limiter.report_upstream(
        MODEL, UpstreamOutcome.THROTTLED, 5.0
    )

    assert backoff.paused_until == harness.clock.now() + 30.0


async def test_status_shows_caller_and_model_buckets_and_backoffs() -> None:
    harness = _harness(_with_model(rpm=60, tpm=10_000))
    await harness.limiter.acquire(FREE_USER, MODEL, 2_000)
    await harness.limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, None)

    status = await harness.limiter.status(FREE_USER, MODEL)

    assert status.backend == "memory"
    assert [(b.bucket.key, b.bucket.metric, b.remaining) for b in status.buckets] == [
        ("t1:u1", Metric.REQUESTS, 19),
        (MODEL, Metric.REQUESTS, 59),
        (MODEL, Metric.TOKENS, 8_000),
    ]
    assert [(b.model, b.factor, b.paused_until) for b in status.backoffs] == [
        (MODEL, 2.0, None)
    ]


async def test_status_reads_without_debiting() -> None:
    harness = _harness()

    for _ in range(3):
        status = await harness.limiter.status(FREE_USER, "")

    assert status.buckets[0].remaining == 20
