"""The service layer, per-user overrides, RPM and TPM on every layer, Envoy."""

from __future__ import annotations

import pytest

from services.core.clock import FakeClock
from services.core.errors import InvalidArgumentError
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.domain import (
    Caller,
    Descriptor,
    RateLimiter,
    UpstreamOutcome,
    decode_descriptor,
)
from services.ratelimit.limits import EnvoyMapping, RateLimits, RateRule
from services.ratelimit.ports import BucketKey, Layer, Metric

MODEL = "gpt-4.1"
LIMITS = RateLimits(
    tiers={"free": RateRule(rpm=20, tpm=10_000), "paid": RateRule(rpm=100)},
    users={"t1:vip": RateRule(rpm=50)},
    services={"chat": 0.6, "batch": 0.3, "internal": 0.1},
    models={MODEL: RateRule(rpm=100, tpm=50_000)},
)
CHAT = Caller(tenant_id="t1", service="chat", user_id="u1", user_tier="free")


def _limiter(limits: RateLimits = LIMITS) -> RateLimiter:
    clock = FakeClock()
    return RateLimiter(
        MemoryCounterStore(clock), limits, clock, reservation_ttl_seconds=300
    )


async def test_a_request_debits_user_service_and_global_rpm_and_tpm() -> None:
    limiter = _limiter()

    result = await limiter.acquire(CHAT, MODEL, 1_000)

    assert [
        (b.bucket.layer, b.bucket.key, b.bucket.metric, b.limit_per_minute, b.remaining)
        for b in result.buckets
    ] == [
        (Layer.USER, "t1:u1", Metric.REQUESTS, 20, 19),
        (Layer.USER, "t1:u1", Metric.TOKENS, 10_000, 9_000),
        (Layer.SERVICE, "chat:gpt-4.1", Metric.REQUESTS, 60, 59),
        (Layer.SERVICE, "chat:gpt-4.1", Metric.TOKENS, 30_000, 29_000),
        (Layer.GLOBAL, MODEL, Metric.REQUESTS, 100, 99),
        (Layer.GLOBAL, MODEL, Metric.TOKENS, 50_000, 49_000),
    ]


async def test_a_service_gets_its_share_and_no_more() -> None:
    limiter = _limiter()
    users = [
        Caller(tenant_id="t1", service="internal", user_id=f"u{i}", user_tier="paid")
        for i in range(11)
    ]

    results = [await limiter.acquire(user, MODEL, 0) for user in users]

    # internal holds 10% of the model's 100 RPM.
    assert [r.allowed for r in results] == [True] * 10 + [False]
    denied_by = results[-1].denied_by
    assert denied_by is not None
    assert denied_by.bucket == BucketKey(
        Layer.SERVICE, "internal:gpt-4.1", Metric.REQUESTS
    )
    assert results[-1].retry_after == 6.0


async def test_services_without_a_share_have_no_service_buckets() -> None:
    limiter = _limiter()
    caller = Caller(tenant_id="t1", service="reports", user_id="u1")

    result = await limiter.acquire(caller, MODEL, 10)

    assert Layer.SERVICE not in {b.bucket.layer for b in result.buckets}


async def test_per_user_override_replaces_only_the_rates_it_sets() -> None:
    limiter = _limiter()
    vip = Caller(tenant_id="t1", service="batch", user_id="vip", user_tier="free")
    other_tenant = Caller(tenant_id="t2", service="batch", user_id="vip")

    result = await limiter.acquire(vip, MODEL, 10)
    other = await limiter.acquire(other_tenant, MODEL, 10)

    user = [b for b in result.buckets if b.bucket.layer is Layer.USER]
    assert [(b.bucket.metric, b.limit_per_minute) for b in user] == [
        (Metric.REQUESTS, 50),
        (Metric.TOKENS, 10_000),
    ]
    assert other.buckets[0].limit_per_minute == 20


async def test_tokens_per_minute_deny_names_the_layer_and_metric() -> None:
    limiter = _limiter()
    for _ in range(5):
        assert (await limiter.acquire(CHAT, MODEL, 2_000)).allowed

    denied = await limiter.acquire(CHAT, MODEL, 1)

    assert denied.denied_by is not None
    assert denied.denied_by.bucket == BucketKey(Layer.USER, "t1:u1", Metric.TOKENS)
    # 10,000 TPM refills one token in 6 ms.
    assert denied.retry_after == 0.006


async def test_backoff_divides_service_and_global_rates_not_user_rates() -> None:
    limiter = _limiter()
    await limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, None)

    result = await limiter.acquire(CHAT, MODEL, 0)

    assert [
        (b.bucket.layer, b.bucket.metric, b.effective_limit_per_minute)
        for b in result.buckets
    ] == [
        (Layer.USER, Metric.REQUESTS, 20),
        (Layer.USER, Metric.TOKENS, 10_000),
        (Layer.SERVICE, Metric.REQUESTS, 30),
        (Layer.SERVICE, Metric.TOKENS, 15_000),
        (Layer.GLOBAL, Metric.REQUESTS, 50),
        (Layer.GLOBAL, Metric.TOKENS, 25_000),
    ]


async def test_replaced_limits_apply_to_the_next_decision() -> None:
    limiter = _limiter()
    await limiter.acquire(CHAT, MODEL, 0)

    limiter.replace_limits(LIMITS.model_copy(update={"services": {"chat": 0.01}}))
    first = await limiter.acquire(CHAT, MODEL, 0)
    second = await limiter.acquire(CHAT, MODEL, 0)

    assert first.allowed
    assert not second.allowed
    assert second.denied_by is not None
    assert second.denied_by.bucket.layer is Layer.SERVICE


def _descriptor(**fields: str | int | bool) -> Descriptor:
    values: dict[str, str | int | bool] = {
        "tenant_id": "t1",
        "user_id": "",
        "user_tier": "",
        "service": "",
        "model": "",
        "tokens": False,
        "hits": 1,
    }
    values.update(fields)
    return Descriptor(**values)  # type: ignore[arg-type]


async def test_descriptors_select_the_layers_their_entries_name() -> None:
    limiter = _limiter()

    result = await limiter.should_rate_limit(
        "tollgate",
        [
            _descriptor(user_id="u1"),
            _descriptor(service="chat", model=MODEL, hits=5),
            _descriptor(model="unknown-model"),
        ],
    )

    assert result.allowed
    user, service, unknown = result.decisions
    assert user.limit is not None and user.limit.bucket.key == "t1:u1"
    assert user.limit.remaining == 19
    assert user.duration_until_reset == 3.0
    # The service descriptor's tightest bucket: chat's 60 RPM share, 55 left.
    assert service.limit is not None
    assert service.limit.bucket.layer is Layer.SERVICE
    assert service.limit.remaining == 55
    assert (unknown.over_limit, unknown.limit) == (False, None)


async def test_an_over_limit_descriptor_denies_the_whole_request() -> None:
    limiter = _limiter()

    first = await limiter.should_rate_limit(
        "tollgate",
        [_descriptor(user_id="u1", hits=19), _descriptor(model=MODEL, hits=10)],
    )
    second = await limiter.should_rate_limit(
        "tollgate",
        [_descriptor(user_id="u1", hits=2), _descriptor(model=MODEL, hits=10)],
    )
    status = await limiter.status(None, MODEL)

    assert first.allowed
    assert not second.allowed
    user, model = second.decisions
    assert user.over_limit and user.duration_until_reset == 3.0
    assert not model.over_limit
    # All-or-nothing: the model's bucket kept its 90.
    assert status.buckets[0].remaining == 90


async def test_a_bucket_named_twice_takes_both_hits() -> None:
    limiter = _limiter()

    result = await limiter.should_rate_limit(
        "tollgate",
        [_descriptor(model=MODEL, hits=60), _descriptor(model=MODEL, hits=41)],
    )

    assert not result.allowed
    assert [d.over_limit for d in result.decisions] == [True, True]


async def test_tokens_descriptors_debit_tokens_buckets() -> None:
    limiter = _limiter()

    result = await limiter.should_rate_limit(
        "tollgate", [_descriptor(model=MODEL, tokens=True, hits=1_000)]
    )

    [decision] = result.decisions
    assert decision.limit is not None
    assert decision.limit.bucket.metric is Metric.TOKENS
    assert decision.limit.remaining == 49_000


async def test_paused_model_is_over_limit_until_the_pause_ends() -> None:
    limiter = _limiter()
    await limiter.report_upstream(MODEL, UpstreamOutcome.THROTTLED, 12.5)

    result = await limiter.should_rate_limit(
        "tollgate", [_descriptor(model=MODEL), _descriptor(user_id="u1")]
    )

    assert not result.allowed
    paused, user = result.decisions
    assert paused.over_limit and paused.duration_until_reset == 12.5
    assert not user.over_limit


async def test_other_domains_get_no_limits() -> None:
    limiter = _limiter(
        LIMITS.model_copy(update={"envoy": EnvoyMapping(domains=["tollgate"])})
    )

    result = await limiter.should_rate_limit(
        "other", [_descriptor(model=MODEL, hits=10**6)]
    )

    assert result.allowed
    assert result.decisions[0].limit is None


def test_entries_map_through_the_configured_keys() -> None:
    mapping = EnvoyMapping(
        entries={
            "x-tenant": "tenant",
            "x-user": "user",
            "llm": "model",
            "unit": "metric",
        }
    )

    descriptor = decode_descriptor(
        mapping,
        [("x-user", "u9"), ("llm", MODEL), ("unit", "tokens"), ("ignored", "1")],
        7,
        path="descriptors[0].entries",
    )

    assert descriptor == Descriptor(
        tenant_id="envoy",
        user_id="u9",
        user_tier="",
        service="",
        model=MODEL,
        tokens=True,
        hits=7,
    )


def test_an_unknown_metric_entry_is_invalid() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_descriptor(
            EnvoyMapping(), [("metric", "bytes")], 1, path="descriptors[2].entries"
        )

    assert [v.field for v in caught.value.violations] == ["descriptors[2].entries"]
