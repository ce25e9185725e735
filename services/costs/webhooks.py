"""Budget alerts delivered to webhooks: signed, retried, logged, at least once.

The transaction that fires an alert also queues one delivery per endpoint whose
filter wants it (:meth:`WebhookDispatcher.routes`), in the ledger's own database: a
committed alert is never without its deliveries, and a restart loses none. The
dispatcher, a background task of every replica, claims due deliveries with a lease
(so that one replica attempts each), POSTs them, and logs every attempt.

Each request carries:

- ``X-Tollgate-Timestamp``: Unix seconds when it was signed;
- ``X-Tollgate-Signature: sha256=<hex>``: HMAC-SHA256, keyed with the endpoint's
  secret, of ``<timestamp>.<body>`` (sent when the endpoint has a secret);
- ``Idempotency-Key``: ``<alert_id>:<endpoint>``, the same on every attempt, so a
  receiver drops what it has seen (delivery is at least once).

A 2xx answer delivers. 408, 425, 429, 5xx, or no answer (refused, reset, timeout)
is retried with exponential backoff and jitter (and ``Retry-After`` when longer),
until the delivery has had ``max_attempts`` attempts or its next one would come
after ``max_age``. Any other status is a refusal, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from services.core.clock import Clock
from services.core.errors import BackendUnavailableError
from services.costs.ports import (
    Alert,
    AlertDelivery,
    AlertOutbox,
    AttemptOutcome,
    BudgetPeriod,
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryQuery,
    DeliveryState,
    ScopeKind,
    WebhookSender,
    WebhookTransportError,
)

SIGNATURE_HEADER = "X-Tollgate-Signature"
TIMESTAMP_HEADER = "X-Tollgate-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# How far a receiver should let a signed timestamp be from its own clock.
DEFAULT_SIGNATURE_TOLERANCE = timedelta(minutes=5)
_USER_AGENT = "Tollgate-Webhooks/1"
_SIGNATURE_SCHEME = "sha256="
# Statuses that say "later", not "no": a timeout, too early, too many, a server error.
_RETRIED_STATUSES = frozenset({408, 425, 429})
DEFAULT_BATCH_SIZE = 16

_log = structlog.get_logger("tollgate.costs.webhooks")


class PayloadFormat(enum.Enum):
    """The body an endpoint gets."""

    JSON = "json"
    SLACK = "slack"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where alerts are delivered, and which.

    Attributes:
        name: the endpoint's stable name: part of the idempotency key and the key
            of its deliveries; renaming an endpoint makes it a new one.
        url: where to POST; never logged (a Slack URL is itself a secret).
        secret: the HMAC key; empty for none (then no signature is sent).
        tenant_ids: only alerts of these tenants' scopes; empty for all alerts.
        min_threshold_percent: only alerts at this threshold or above.
    """

    name: str
    url: str = field(repr=False)
    secret: bytes = field(repr=False)
    format: PayloadFormat = PayloadFormat.JSON
    tenant_ids: frozenset[str] = frozenset()
    min_threshold_percent: int = 0

    def wants(self, alert: Alert) -> bool:
        """Whether this endpoint's filter selects ``alert``."""
        return (
            not self.tenant_ids or alert.budget.scope.tenant_id in self.tenant_ids
        ) and alert.threshold_percent >= self.min_threshold_percent


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again, and when to give up.

    The n-th retry waits ``initial_backoff x 2^(n-1)``, capped at ``max_backoff``,
    times a random factor in [0.5, 1) (jitter, so that receivers coming back are
    not hit by every delivery at once); a longer ``Retry-After`` (up to
    ``max_backoff``) wins.

    Attributes:
        lease: how long a claimed delivery is reserved for the dispatcher that
            claimed it; past it (the replica died mid-attempt), another claims it.
            Longer than the request timeout, plus room for clock skew.
    """

    max_attempts: int = 20
    max_age: timedelta = timedelta(hours=24)
    initial_backoff: timedelta = timedelta(seconds=5)
    max_backoff: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(seconds=70)

    def backoff(
        self, attempt: int, draw: float, retry_after: float | None = None
    ) -> timedelta:
        """The wait after failed attempt number ``attempt``; ``draw`` in [0, 1)."""
        # In float seconds: doubling in timedelta would overflow long before
        # max_attempts runs out.
        doubled = self.initial_backoff.total_seconds() * float(
            1 << min(attempt - 1, 62)
        )
        capped = min(doubled, self.max_backoff.total_seconds())
        delay = timedelta(seconds=capped * (0.5 + draw / 2))
        if retry_after is not None and retry_after > 0:
            asked = min(timedelta(seconds=retry_after), self.max_backoff)
            delay = max(delay, asked)
        return delay

    def outcome(
        self,
        claimed: ClaimedDelivery,
        attempted_at: datetime,
        status: int,
        error: str,
        latency: timedelta,
        retry_after: float | None,
        draw: float,
    ) -> AttemptOutcome:
        """What an attempt's answer (``status`` 0: none) makes of the delivery."""

        def finish(state: DeliveryState, note: str = "") -> AttemptOutcome:
            return AttemptOutcome(
                DeliveryAttempt(
                    claimed.attempt, attempted_at, status, note or error, latency
                ),
                state,
                None,
            )

        if 200 <= status < 300:
            return finish(DeliveryState.DELIVERED)
        if status and status not in _RETRIED_STATUSES and status < 500:
            return finish(DeliveryState.FAILED, f"HTTP {status} is not retried")
        if claimed.attempt >= self.max_attempts:
            return finish(
                DeliveryState.FAILED,
                _joined(error, f"gave up after {claimed.attempt} attempts"),
            )
        due = attempted_at + self.backoff(claimed.attempt, draw, retry_after)
        if due > claimed.created_at + self.max_age:
            return finish(
                DeliveryState.FAILED,
                _joined(error, "gave up: the next attempt would pass the maximum age"),
            )
        return AttemptOutcome(
            DeliveryAttempt(claimed.attempt, attempted_at, status, error, latency),
            DeliveryState.PENDING,
            due,
        )


def _joined(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second


def idempotency_key(alert_id: str, endpoint: str) -> str:
    """The key every attempt of one alert's delivery to one endpoint carries."""
    return f"{alert_id}:{endpoint}"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Tollgate-Signature`` value: ``sha256=`` + hex HMAC of ``ts.body``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return _SIGNATURE_SCHEME + digest.hexdigest()


def verify_signature(
    secret: bytes,
    body: bytes,
    timestamp_header: str,
    signature_header: str,
    now: float,
    tolerance: timedelta = DEFAULT_SIGNATURE_TOLERANCE,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent.

    Args:
        secret: the endpoint's secret.
        body: the raw request body, as received (before any JSON parsing).
        timestamp_header: the ``X-Tollgate-Timestamp`` value.
        signature_header: the ``X-Tollgate-Signature`` value.
        now: the receiver's time, in Unix seconds.
        tolerance: the largest accepted distance between ``now`` and the
            timestamp; a replayed request older than this is refused.
    """
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance.total_seconds():
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature_header)


def render(
    payload_format: PayloadFormat, alert: Alert, currency_code: str, key: str
) -> bytes:
    """The request body of ``alert`` in ``payload_format``, as UTF-8 JSON."""
    document: dict[str, object]
    if payload_format is PayloadFormat.SLACK:
        document = {"text": _escape_slack(summary(alert, currency_code))}
    else:
        budget = alert.budget
        scope = budget.scope
        document = {
            "type": "budget_alert",
            "alert_id": alert.alert_id,
            "idempotency_key": key,
            "scope": {
                "kind": scope.kind.value,
                "tenant_id": scope.tenant_id,
                "service": scope.service,
                "user_id": scope.user_id,
                "api_key_id": scope.api_key_id,
            },
            "period": budget.period.value,
            "period_start": _iso(alert.period_start),
            "threshold_percent": alert.threshold_percent,
            "spent_micros": alert.spent_micros,
            "limit_micros": budget.limit_micros,
            "currency_code": currency_code,
            "hard": budget.hard,
            "fired_at": _iso(alert.fired_at),
            "summary": summary(alert, currency_code),
        }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def summary(alert: Alert, currency_code: str) -> str:
    """One readable sentence: who, which budget, the threshold, spent and limit."""
    budget = alert.budget
    period = "daily" if budget.period is BudgetPeriod.DAY else "monthly"
    kind = "hard" if budget.hard else "soft"
    return (
        f"Budget alert: {_describe_scope(alert)} reached "
        f"{alert.threshold_percent}% of its {period} budget: "
        f"{format_money(alert.spent_micros, currency_code)} spent of "
        f"{format_money(budget.limit_micros, currency_code)} "
        f"({kind} limit; period from {alert.period_start:%Y-%m-%d %H:%M} UTC)."
    )


def format_money(micros: int, currency_code: str) -> str:
    """Micro-dollars as dollars and cents, rounded half up: ``$1,234.57``."""
    cents = (micros + 5_000) // 10_000
    amount = f"{cents // 100:,}.{cents % 100:02d}"
    return f"${amount}" if currency_code == "USD" else f"{amount} {currency_code}"


def _describe_scope(alert: Alert) -> str:
    scope = alert.budget.scope
    match scope.kind:
        case ScopeKind.GLOBAL:
            return "all spend"
        case ScopeKind.TENANT:
            return f"tenant {scope.tenant_id}"
        case ScopeKind.SERVICE:
            return f"service {scope.service} of tenant {scope.tenant_id}"
        case ScopeKind.USER:
            return f"user {scope.user_id} of tenant {scope.tenant_id}"
        case ScopeKind.KEY:
            return f"API key {scope.api_key_id} of tenant {scope.tenant_id}"


def _escape_slack(text: str) -> str:
    # Slack's mrkdwn gives &, < and > meaning (links, mentions): escape them.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class WebhookDispatcher:
    """Routes alerts to endpoints and delivers the queued deliveries.

    One per replica; replicas sharing a ledger share its queue, and the lease makes
    each attempt one replica's. Run :meth:`run` as a background task; it does
    nothing without endpoints.
    """

    def __init__(
        self,
        outbox: AlertOutbox,
        sender: WebhookSender,
        clock: Clock,
        endpoints: Sequence[WebhookEndpoint],
        currency_code: str,
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._clock = clock
        self._endpoints: Mapping[str, WebhookEndpoint] = {e.name: e for e in endpoints}
        self._currency_code = currency_code
        self._policy = policy or RetryPolicy()
        self._batch_size = batch_size
        self._draw = draw
        self._owner = f"dispatcher-{uuid.uuid4().hex}"
        self._wake = asyncio.Event()

    @property
    def endpoints(self) -> list[str]:
        """The names of the configured endpoints."""
        return list(self._endpoints)

    def routes(self, alert: Alert) -> list[str]:
        """The endpoints whose filter wants ``alert``."""
        return [name for name, e in self._endpoints.items() if e.wants(alert)]

    def fired(self, alerts: Sequence[Alert]) -> None:
        """Wake the dispatcher: deliveries were just queued."""
        if alerts and self._endpoints:
            self._wake.set()

    async def list_deliveries(self, query: DeliveryQuery) -> list[AlertDelivery]:
        """The selected deliveries and their attempts, oldest alert first."""
        return await self._outbox.deliveries(query)

    async def run(self, poll_interval_seconds: float) -> None:
        """Deliver until cancelled: at once when woken, else every interval.

        A cancelled attempt keeps its lease until the lease ends; the delivery is
        then attempted again, with the same idempotency key.
        """
        if not self._endpoints:
            return
        while True:
            self._wake.clear()
            handled = 0
            try:
                handled = await self.deliver_due()
            except BackendUnavailableError as error:
                _log.warning("alert_webhook_claim_failed", reason=error.reason)
            except Exception as error:
                # A bug must not end delivery for good: leases bring the
                # deliveries back, and the next round tries again.
                _log.error(
                    "alert_webhook_round_failed", error_type=type(error).__name__
                )
            if handled >= self._batch_size:
                continue  # more may be due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_interval_seconds)

    async def deliver_due(self) -> int:
        """Claim the deliveries due now and attempt each once; returns how many."""
        now = self._now()
        claimed = await self._outbox.claim_deliveries(
            self.endpoints,
            now,
            now + self._policy.lease,
            self._owner,
            self._batch_size,
        )
        await asyncio.gather(*(self._attempt(delivery) for delivery in claimed))
        return len(claimed)

    async def _attempt(self, claimed: ClaimedDelivery) -> None:
        endpoint = self._endpoints[claimed.endpoint]
        alert = claimed.alert
        key = idempotency_key(alert.alert_id, endpoint.name)
        body = render(endpoint.format, alert, self._currency_code, key)
        timestamp = int(self._clock.now())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            IDEMPOTENCY_HEADER: key,
            TIMESTAMP_HEADER: str(timestamp),
            "X-Tollgate-Alert-Id": alert.alert_id,
            "X-Tollgate-Attempt": str(claimed.attempt),
        }
        if endpoint.secret:
            headers[SIGNATURE_HEADER] = sign(endpoint.secret, timestamp, body)
        attempted_at = self._now()
        started = self._clock.monotonic()
        status, error, retry_after = 0, "", None
        try:
            response = await self._sender.post(endpoint.url, body, headers)
            status, retry_after = response.status, response.retry_after
        except WebhookTransportError as failure:
            error = str(failure)
        latency = timedelta(seconds=max(0.0, self._clock.monotonic() - started))
        outcome = self._policy.outcome(
            claimed, attempted_at, status, error, latency, retry_after, self._draw()
        )
        try:
            kept = await self._outbox.finish_attempt(claimed, self._owner, outcome)
        except BackendUnavailableError as failure:
            # The lease ends and the delivery is attempted again: at least once.
            _log.warning(
                "alert_webhook_log_failed",
                endpoint=endpoint.name,
                alert_id=alert.alert_id,
                reason=failure.reason,
            )
            return
        _log.log(
            _LEVELS[outcome.state],
            "alert_webhook_attempted",
            endpoint=endpoint.name,
            alert_id=alert.alert_id,
            attempt=claimed.attempt,
            http_status=status,
            error=outcome.attempt.error,
            state=outcome.state.value,
            next_attempt_at=(
                _iso(outcome.next_attempt_at) if outcome.next_attempt_at else None
            ),
            latency_ms=round(latency.total_seconds() * 1000, 3),
            lease_lost=not kept,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)


_LEVELS = {
    DeliveryState.DELIVERED: logging.INFO,
    DeliveryState.PENDING: logging.WARNING,
    DeliveryState.FAILED: logging.ERROR,
}
