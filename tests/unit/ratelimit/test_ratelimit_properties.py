"""Property-based checks of the limiter's guarantees, on a fake clock.

Over any window of length W, a bucket of rate R per minute and capacity C admits at
most C + R * W / 60 units; a Reconcile never gives back more than its reservation
took, and no bucket ever holds more than its capacity.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.clock import FakeClock
from services.ratelimit.adapters.memory import MemoryCounterStore
from services.ratelimit.domain import Caller, RateLimiter
from services.ratelimit.limits import RateLimits, RateRule

MODEL = "gpt-4.1"
USER = Caller(tenant_id="t1", service="chat", user_id="u1")

# One step: wait some milliseconds (bursts of short waits, and waits long enough
# to refill any bucket), then ask for some tokens.
_waits = st.one_of(st.integers(0, 50), st.integers(0, 180_000))
_steps = st.lists(st.tuples(_waits, st.integers(0, 400)), min_size=1, max_size=60)


def _limiter(rpm: int, tpm: int, burst: float, clock: FakeClock) -> RateLimiter:
    limits = RateLimits(
        burst_multiplier=burst,
        tiers={"free": RateRule(rpm=rpm, tpm=tpm)},
    )
    return RateLimiter(
        MemoryCounterStore(clock), limits, clock, reservation_ttl_seconds=60
    )


@settings(max_examples=150, deadline=None)
@given(
    rpm=st.integers(1, 120),
    tpm=st.integers(400, 5_000),
    burst=st.sampled_from([1.0, 1.2, 1.5, 2.0]),
    steps=_steps,
)
def test_no_window_admits_more_than_rate_times_window_plus_burst(
    rpm: int, tpm: int, burst: float, steps: list[tuple[int, int]]
) -> None:
    async def run() -> list[tuple[int, int]]:
        clock = FakeClock()
        limiter = _limiter(rpm, tpm, burst, clock)
        admitted: list[tuple[int, int]] = []  # (time in ms, tokens)
        now_ms = 0
        for wait_ms, tokens in steps:
            clock.advance(wait_ms / 1000)
            now_ms += wait_ms
            if (await limiter.acquire(USER, MODEL, tokens)).allowed:
                admitted.append((now_ms, tokens))
        return admitted

    admitted = asyncio.run(run())
    request_capacity = rpm * burst
    token_capacity = tpm * burst
    for start in range(len(admitted)):
        for end in range(start, len(admitted)):
            window_ms = admitted[end][0] - admitted[start][0]
            window = admitted[start : end + 1]
            assert len(window) <= request_capacity + rpm * window_ms / 60_000
            assert (
                sum(t for _, t in window) <= token_capacity + tpm * window_ms / 60_000
            )


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3_000),  # wait in ms
            st.integers(0, 1_000),  # estimated tokens
            st.integers(0, 1_500),  # actual tokens
            st.booleans(),  # reconcile twice
        ),
        min_size=1,
        max_size=40,
    )
)
def test_refunds_never_exceed_reservations_nor_capacity(
    steps: list[tuple[int, int, int, bool]],
) -> None:
    async def run() -> None:
        clock = FakeClock()
        limiter = _limiter(1_000, 2_000, 1.0, clock)
        for wait_ms, estimated, actual, twice in steps:
            clock.advance(wait_ms / 1000)
            acquired = await limiter.acquire(USER, MODEL, estimated)
            if not acquired.allowed:
                continue
            before = (await limiter.status(USER, "")).buckets[1].remaining
            settled = await limiter.reconcile(acquired.reservation_id, actual)
            after = (await limiter.status(USER, "")).buckets[1]
            assert settled.settled
            assert settled.refunded_tokens == estimated - actual
            assert settled.refunded_tokens <= estimated
            assert after.remaining <= after.capacity
            assert after.remaining - before <= max(0, estimated - actual)
            if twice:
                again = await limiter.reconcile(acquired.reservation_id, 0)
                assert (again.settled, again.refunded_tokens) == (False, 0)

    asyncio.run(run())
