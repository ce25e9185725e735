"""Webhook delivery's rules: payloads, signatures, backoff, give-up, filters, settings.

Delivery itself (a real receiver, both databases, restarts, replicas) is tested in
tests/integration/test_costs_webhooks.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.costs.adapters.webhook_http import _seconds
from services.costs.app import retry_policy, webhook_endpoints
from services.costs.config import CostsSettings
from services.costs.ports import (
    Alert,
    Budget,
    BudgetPeriod,
    BudgetScope,
    ClaimedDelivery,
    DeliveryState,
    ScopeKind,
)
from services.costs.webhooks import (
    PayloadFormat,
    RetryPolicy,
    WebhookEndpoint,
    format_money,
    idempotency_key,
    render,
    sign,
    verify_signature,
)

AT = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
SECRET = b"whsec-0123456789abcdef"
NO_LATENCY = timedelta(0)


def _alert(
    scope: BudgetScope = BudgetScope(ScopeKind.TENANT, "acme"),  # noqa: B008
    threshold: int = 90,
    spent: int = 90_004_999,
    limit: int = 100_000_000,
    period: BudgetPeriod = BudgetPeriod.DAY,
) -> Alert:
    budget = Budget(scope, period, limit, True, (50, 90), "")
    start = AT.replace(hour=0, minute=0)
    return Alert("alert_0123456789abcdef01234567", budget, threshold, spent, start, AT)


def _claimed(attempt: int, created_at: datetime = AT) -> ClaimedDelivery:
    return ClaimedDelivery(_alert(), "ops", attempt, created_at)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'

    header = sign(SECRET, 1_767_259_800, body)

    expected = hmac.new(SECRET, b"1767259800." + body, hashlib.sha256).hexdigest()
    assert header == f"sha256={expected}"


def test_a_receiver_accepts_only_the_exact_body_secret_and_a_recent_timestamp() -> None:
    body = b'{"threshold_percent":90}'
    now = 1_767_259_800
    header = sign(SECRET, now, body)

    assert verify_signature(SECRET, body, str(now), header, now=now + 299)
    assert not verify_signature(SECRET, body + b" ", str(now), header, now=now)
    assert not verify_signature(b"another-secret-xx", body, str(now), header, now=now)
    assert not verify_signature(SECRET, body, str(now + 1), header, now=now)
    # A captured request replayed later than the tolerance is refused.
    assert not verify_signature(SECRET, body, str(now), header, now=now + 301)
    assert not verify_signature(SECRET, body, "soon", header, now=now)


def test_json_payload_carries_the_alert_in_integers_and_utc() -> None:
    key = idempotency_key("alert_0123456789abcdef01234567", "ops")

    document = json.loads(render(PayloadFormat.JSON, _alert(), "USD", key))

    assert key == "alert_0123456789abcdef01234567:ops"
    assert document == {
        "type": "budget_alert",
        "alert_id": "alert_0123456789abcdef01234567",
        "idempotency_key": key,
        "scope": {
            "kind": "tenant",
            "tenant_id": "acme",
            "service": "",
            "user_id": "",
            "api_key_id": "",
        },
        "period": "day",
        "period_start": "2026-01-01T00:00:00Z",
        "threshold_percent": 90,
        "spent_micros": 90_004_999,
        "limit_micros": 100_000_000,
        "currency_code": "USD",
        "hard": True,
        "fired_at": "2026-01-01T09:30:00Z",
        "summary": "Budget alert: tenant acme reached 90% of its daily budget: "
        "$90.00 spent of $100.00 (hard limit; period from 2026-01-01 00:00 UTC).",
    }


def test_the_same_alert_renders_the_same_bytes_on_every_attempt() -> None:
    first = render(PayloadFormat.JSON, _alert(), "USD", "k")

    assert render(PayloadFormat.JSON, _alert(), "USD", "k") == first


def test_slack_payload_is_one_readable_text() -> None:
    alert = _alert(
        BudgetScope(ScopeKind.SERVICE, "acme", service="chat"),
        threshold=75,
        spent=1_234_567_890_000,
        limit=2_000_000_000_000,
        period=BudgetPeriod.MONTH,
    )

    document = json.loads(render(PayloadFormat.SLACK, alert, "USD", "k"))

    assert list(document) == ["text"]
    assert document["text"] == (
        "Budget alert: service chat of tenant acme reached 75% of its monthly "
        "budget: $1,234,567.89 spent of $2,000,000.00 "
        "(hard limit; period from 2026-01-01 00:00 UTC)."
    )


def test_slack_text_escapes_what_slack_would_read_as_markup() -> None:
    alert = _alert(BudgetScope(ScopeKind.USER, "a&b", user_id="<!channel>"))

    text = json.loads(render(PayloadFormat.SLACK, alert, "USD", "k"))["text"]

    assert "user &lt;!channel&gt; of tenant a&amp;b" in text
    assert "<" not in text


def test_global_scope_and_other_currencies_read_naturally() -> None:
    alert = _alert(BudgetScope(ScopeKind.GLOBAL), spent=5_000, limit=10_000)

    text = json.loads(render(PayloadFormat.SLACK, alert, "EUR", "k"))["text"]

    assert text.startswith("Budget alert: all spend reached 90% of its daily budget")
    assert "0.01 EUR spent of 0.01 EUR" in text


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "$0.00"),
        (4_999, "$0.00"),
        (5_000, "$0.01"),  # half a cent rounds up
        (9_994_999, "$9.99"),
        (9_995_000, "$10.00"),
        (1_234_567_890_000, "$1,234,567.89"),
    ],
)
def test_money_is_dollars_and_cents_rounded_half_up(micros: int, text: str) -> None:
    assert format_money(micros, "USD") == text


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(
        initial_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=60)
    )

    assert policy.backoff(1, draw=0.0) == timedelta(seconds=5)
    assert policy.backoff(1, draw=0.999999) < timedelta(seconds=10)
    assert policy.backoff(2, draw=0.0) == timedelta(seconds=10)
    assert policy.backoff(3, draw=0.5) == timedelta(seconds=30)
    assert policy.backoff(4, draw=0.0) == timedelta(seconds=30)  # 80 s, capped
    assert policy.backoff(1_000, draw=0.0) == timedelta(seconds=30)  # no overflow


def test_a_longer_retry_after_wins_but_never_past_the_cap() -> None:
    policy = RetryPolicy(
        initial_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=60)
    )

    assert policy.backoff(1, 0.0, retry_after=2) == timedelta(seconds=5)
    assert policy.backoff(1, 0.0, retry_after=42) == timedelta(seconds=42)
    assert policy.backoff(1, 0.0, retry_after=3600) == timedelta(seconds=60)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_delivers(status: int) -> None:
    outcome = RetryPolicy().outcome(_claimed(1), AT, status, "", NO_LATENCY, None, 0)

    assert outcome.state is DeliveryState.DELIVERED
    assert outcome.next_attempt_at is None
    assert (outcome.attempt.attempt, outcome.attempt.http_status) == (1, status)
    assert outcome.attempt.error == ""


@pytest.mark.parametrize("status", [0, 408, 425, 429, 500, 502, 503, 504])
def test_no_answer_timeouts_throttles_and_server_errors_are_retried(
    status: int,
) -> None:
    policy = RetryPolicy(initial_backoff=timedelta(seconds=10))
    error = "cannot connect: Connection refused" if status == 0 else ""

    outcome = policy.outcome(_claimed(2), AT, status, error, NO_LATENCY, None, 0.0)

    assert outcome.state is DeliveryState.PENDING
    assert outcome.next_attempt_at == AT + timedelta(seconds=10)  # 20 s x 0.5
    assert outcome.attempt.error == error


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_refusals_and_redirects_are_not_retried(status: int) -> None:
    outcome = RetryPolicy().outcome(_claimed(1), AT, status, "", NO_LATENCY, None, 0)

    assert outcome.state is DeliveryState.FAILED
    assert outcome.attempt.error == f"HTTP {status} is not retried"


def test_the_last_allowed_attempt_gives_up() -> None:
    policy = RetryPolicy(max_attempts=3)

    third = policy.outcome(_claimed(3), AT, 0, "timed out", NO_LATENCY, None, 0)
    second = policy.outcome(_claimed(2), AT, 503, "", NO_LATENCY, None, 0)

    assert second.state is DeliveryState.PENDING
    assert third.state is DeliveryState.FAILED
    assert third.attempt.error == "timed out; gave up after 3 attempts"


def test_no_attempt_is_scheduled_past_the_maximum_age() -> None:
    policy = RetryPolicy(
        max_age=timedelta(hours=1), initial_backoff=timedelta(minutes=20)
    )
    created = AT - timedelta(minutes=55)

    # The next attempt would come 10 to 20 minutes later: past the hour.
    outcome = policy.outcome(_claimed(1, created), AT, 500, "", NO_LATENCY, None, 0)

    assert outcome.state is DeliveryState.FAILED
    assert "maximum age" in outcome.attempt.error


def test_endpoints_filter_by_tenant_and_threshold() -> None:
    everything = WebhookEndpoint("all", "https://a.example", b"")
    acme_urgent = WebhookEndpoint(
        "acme", "https://b.example", b"", tenant_ids=frozenset({"acme"})
    )
    urgent = WebhookEndpoint(
        "urgent", "https://c.example", b"", min_threshold_percent=90
    )

    acme_75 = _alert(threshold=75)
    globex_90 = _alert(BudgetScope(ScopeKind.USER, "globex", user_id="u"), 90)
    global_100 = _alert(BudgetScope(ScopeKind.GLOBAL), 100)

    assert [e.wants(acme_75) for e in (everything, acme_urgent, urgent)] == [
        True,
        True,
        False,
    ]
    assert [e.wants(globex_90) for e in (everything, acme_urgent, urgent)] == [
        True,
        False,
        True,
    ]
    assert [e.wants(global_100) for e in (everything, acme_urgent, urgent)] == [
        True,
        False,
        True,
    ]


def test_an_endpoint_never_shows_its_url_or_secret() -> None:
    endpoint = WebhookEndpoint("ops", "https://hooks.example/T0/B0/token", SECRET)

    assert "token" not in repr(endpoint)
    assert "whsec" not in repr(endpoint)


def _settings(**values: object) -> CostsSettings:
    return CostsSettings(database_path=":memory:", **values)  # type: ignore[arg-type]


def test_endpoints_and_policy_come_from_the_settings() -> None:
    settings = _settings(
        alert_webhooks=[
            {
                "name": "ops",
                "url": "https://hooks.example/tollgate",
                "secret": "whsec-0123456789abcdef",
                "tenant_ids": ["acme"],
                "min_threshold_percent": 75,
            },
            {
                "name": "slack",
                "url": "https://hooks.slack.example/T/B/x",
                "format": "slack",
            },
            {
                "name": "signed-slack",
                "url": "https://hooks.example/s",
                "format": "slack",
            },
        ],
        alert_webhook_secrets={"signed-slack": "from-a-secret-store"},
        alert_webhook_timeout_seconds=3,
        alert_webhook_max_attempts=4,
        alert_webhook_initial_backoff_seconds=2,
        alert_webhook_max_backoff_seconds=30,
        alert_webhook_max_age_seconds=600,
    )

    endpoints = webhook_endpoints(settings)
    policy = retry_policy(settings)

    assert [(e.name, e.format, e.secret) for e in endpoints] == [
        ("ops", PayloadFormat.JSON, b"whsec-0123456789abcdef"),
        ("slack", PayloadFormat.SLACK, b""),
        ("signed-slack", PayloadFormat.SLACK, b"from-a-secret-store"),
    ]
    assert endpoints[0].tenant_ids == frozenset({"acme"})
    assert endpoints[0].min_threshold_percent == 75
    assert policy == RetryPolicy(
        max_attempts=4,
        max_age=timedelta(minutes=10),
        initial_backoff=timedelta(seconds=2),
        max_backoff=timedelta(seconds=30),
        lease=timedelta(seconds=63),
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "alert_webhooks": [
                    {"name": "ops", "url": "https://h.example/SECRETPATH"}
                ]
            },
            "needs a secret",
        ),
        (
            {
                "alert_webhooks": [
                    {
                        "name": "ops",
                        "url": "https://h.example/a",
                        "secret": "SHORTSECRET",
                    }
                ]
            },
            "at least 16 characters",
        ),
        (
            {
                "alert_webhooks": [
                    {"name": "ops", "url": "https://h.example/a", "format": "slack"},
                    {"name": "ops", "url": "https://h.example/b", "format": "slack"},
                ]
            },
            "same name",
        ),
        (
            {"alert_webhook_secrets": {"nobody": "SECRETSECRETSECRET"}},
            "names no endpoint",
        ),
        (
            {"alert_webhooks": [{"name": "ops", "url": "ftp://h.example/SECRETPATH"}]},
            "alert_webhooks.0.url",
        ),
        (
            {
                "alert_webhooks": [
                    {"name": "Ops!", "url": "https://h.example/SECRETPATH"}
                ]
            },
            "alert_webhooks.0.name",
        ),
        (
            {
                "alert_webhook_initial_backoff_seconds": 60,
                "alert_webhook_max_backoff_seconds": 30,
            },
            "exceeds",
        ),
    ],
)
def test_bad_webhook_settings_fail_start_up_without_echoing_secrets(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        _settings(**values)

    text = str(raised.value)
    assert message in text
    assert "SECRET" not in text


def test_retry_after_is_read_in_seconds_only() -> None:
    assert _seconds("120") == 120.0
    assert _seconds("1.5") == 1.5
    assert _seconds(None) is None
    assert _seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert _seconds("-3") is None
    assert _seconds("inf") is None
    assert _seconds("nan") is None
