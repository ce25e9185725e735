"""The HTTP door's rate-limit headers, written as OpenAI writes them."""

from __future__ import annotations

import pytest

from services.core.errors import QuotaViolation, ResourceExhaustedError
from services.gateway.domain import RateHeadroom
from services.gateway.http.errors import headroom_headers, openai_error, reset_duration
from services.gateway.pipeline.admit import headroom_metadata


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0ms"), (0.1204, "120ms"), (1.5, "1.5s"), (59.0, "59s"), (360.0, "6m0s")],
)
def test_reset_times_read_like_openais(seconds: float, text: str) -> None:
    assert reset_duration(seconds) == text


def test_a_denial_carries_the_headroom_of_both_metrics() -> None:
    headroom = (
        RateHeadroom("requests", 60, 0, 0.75),
        RateHeadroom("tokens", 40_000, 1_200, 57.0),
    )
    error = ResourceExhaustedError(
        "rate limit exceeded",
        reason="RATE_LIMITED",
        retry_after=0.75,
        violations=[QuotaViolation("user:u1", "user limit of 60 requests per minute")],
        metadata=headroom_metadata(headroom),
    )

    answer = openai_error(error)

    assert answer.status == 429
    assert answer.headers["retry-after-ms"] == "750"
    assert (
        {k: v for k, v in answer.headers.items() if "ratelimit" in k}
        == (headroom_headers(headroom))
        == {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "750ms",
            "x-ratelimit-limit-tokens": "40000",
            "x-ratelimit-remaining-tokens": "1200",
            "x-ratelimit-reset-tokens": "57s",
        }
    )
