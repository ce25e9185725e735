"""The ledger's storage port and the records that cross it.

A :class:`LedgerStore` keeps booked entries (idempotent on request id), budgets,
budget reservations and fired alerts, and aggregates spend. Its two write paths take
batches, so that the ledger can group concurrent calls into one durable commit, and
run the budget rules that the ledger hands them *inside* their transaction: that is
what makes a reservation atomic across the chain of scopes and an alert fire once.
The same transaction queues each new alert for the webhook endpoints that want it,
in the :class:`AlertOutbox` the webhook dispatcher drains. SQLite and Postgres
implement both (``adapters/``); a :class:`WebhookSender` posts to the endpoints.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from services.core.pricing import TokenUsage


class CacheStatus(enum.Enum):
    """Where an answer came from; EXACT and SEMANTIC are cache hits."""

    UNSPECIFIED = "unspecified"
    MISS = "miss"
    EXACT = "exact"
    SEMANTIC = "semantic"
    SKIPPED = "skipped"

    @property
    def is_hit(self) -> bool:
        """Whether the answer was served from the cache."""
        return self in (CacheStatus.EXACT, CacheStatus.SEMANTIC)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One booked request; amounts in micro-dollars, times aware and in UTC.

    Attributes:
        day: the calendar day of ``occurred_at`` in the ledger's time zone
            (``YYYY-MM-DD``), fixed at booking.
        api_key_id: the public id of the API key the request came with; empty
            when unknown (entries booked before keys were recorded).
    """

    request_id: str
    tenant_id: str
    service: str
    user_id: str
    model: str
    requested_model: str
    deployment: str
    usage: TokenUsage
    batch: bool
    cache_status: CacheStatus
    cost_micros: int
    cache_saved_micros: int
    routing_saved_micros: int
    batch_saved_micros: int
    currency_code: str
    occurred_at: datetime
    day: str
    api_key_id: str = ""

    @property
    def saved_micros(self) -> int:
        """Every saving of this request."""
        return (
            self.cache_saved_micros
            + self.routing_saved_micros
            + self.batch_saved_micros
        )


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """Entries with ``start <= occurred_at < end``, of one tenant unless empty.

    Attributes:
        api_key_id: only the entries booked under this API key id, unless empty.
    """

    tenant_id: str
    start: datetime | None
    end: datetime
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class ReportLine:
    """Totals of the entries sharing one label (a model, a day, ...)."""

    key: str
    requests: int
    cost_micros: int
    saved_micros: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """Aggregated entries of a report query; lines are sorted by key."""

    requests: int
    cost_micros: int
    cache_saved_micros: int
    routing_saved_micros: int
    batch_saved_micros: int
    by_model: tuple[ReportLine, ...]
    by_service: tuple[ReportLine, ...]
    by_user: tuple[ReportLine, ...]
    by_tenant: tuple[ReportLine, ...]
    by_day: tuple[ReportLine, ...]
    by_api_key: tuple[ReportLine, ...] = ()


class ScopeKind(enum.Enum):
    """What a budget covers."""

    GLOBAL = "global"
    TENANT = "tenant"
    SERVICE = "service"
    USER = "user"
    KEY = "key"


class BudgetPeriod(enum.Enum):
    """The calendar period a budget resets on, in the ledger's time zone."""

    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """A budget scope; fields that do not apply to ``kind`` are empty.

    Attributes:
        api_key_id: the API key's public id, for KEY scopes.
    """

    kind: ScopeKind
    tenant_id: str = ""
    service: str = ""
    user_id: str = ""
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit for one scope and period, in micro-dollars."""

    scope: BudgetScope
    period: BudgetPeriod
    limit_micros: int
    hard: bool
    alert_thresholds_percent: tuple[int, ...]
    downgrade_model: str


# A half-open period [start, end) in UTC.
Period = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget, its current period, and what counts against it there.

    Attributes:
        spent_micros: cost booked in the scope during the period.
        reserved_micros: unsettled, unexpired reservations made in the scope
            during the period.
    """

    budget: Budget
    period: Period
    spent_micros: int
    reserved_micros: int


class ReservationPlan(Protocol):
    """What a budget decision asks the store to reserve."""

    @property
    def reserve_micros(self) -> int:
        """Micro-dollars to reserve; 0 reserves nothing."""
        ...


PlanT = TypeVar("PlanT", bound=ReservationPlan)


@dataclass(frozen=True, slots=True)
class ReservationRequest(Generic[PlanT]):
    """A request to decide on and, if the decision says so, reserve.

    Attributes:
        scopes: the caller's chain of scopes; their budgets are read (and locked).
        periods: the period of each kind containing ``now``.
        decide: the budget rule, run inside the store's transaction on the usage of
            every budget of ``scopes``; its plan's ``reserve_micros`` are reserved
            under ``reservation_id`` in the caller's scopes.
        api_key_id: the caller's API key id, so a KEY scope counts the
            reservation; empty for none.
    """

    reservation_id: str
    request_id: str
    tenant_id: str
    service: str
    user_id: str
    model: str
    scopes: tuple[BudgetScope, ...]
    periods: Mapping[BudgetPeriod, Period]
    now: datetime
    expires_at: datetime
    decide: Callable[[Sequence[BudgetUsage]], PlanT]
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry to book, the reservation it settles, and where its spend counts.

    Attributes:
        reservation_id: the reservation released by this booking; empty for none.
        scopes: the entry's chain of scopes, whose budgets may fire alerts.
        periods: the period of each kind containing ``entry.occurred_at``.
    """

    entry: LedgerEntry
    reservation_id: str
    scopes: tuple[BudgetScope, ...]
    periods: Mapping[BudgetPeriod, Period]


@dataclass(frozen=True, slots=True)
class Booking:
    """The entry stored under a request id, and what this call did.

    Attributes:
        created: this call stored the entry (False: the request id was known).
        reservation_settled: this call released the entry's reservation.
    """

    entry: LedgerEntry
    created: bool
    reservation_settled: bool


@dataclass(frozen=True, slots=True)
class Alert:
    """A budget threshold crossed, once per scope, period and threshold."""

    alert_id: str
    budget: Budget
    threshold_percent: int
    spent_micros: int
    period_start: datetime
    fired_at: datetime


def alert_id(budget: Budget, period_start: datetime, threshold_percent: int) -> str:
    """The stable id of an alert: a digest of scope, period, its start, threshold."""
    scope = budget.scope
    key = "\x1f".join(
        (
            scope.kind.value,
            scope.tenant_id,
            scope.service,
            scope.user_id,
            budget.period.value,
            period_start.isoformat(),
            str(threshold_percent),
            # Only KEY scopes have one: the ids of the other scopes stay as they were.
            *((scope.api_key_id,) if scope.api_key_id else ()),
        )
    )
    return "alert_" + hashlib.sha256(key.encode()).hexdigest()[:24]


# The alert rule: given a budget, its spend in a period and the thresholds already
# fired there, the thresholds to fire now.
AlertRule = Callable[[Budget, int, frozenset[int]], Sequence[int]]

# The alert routes: the names of the webhook endpoints a new alert is queued for.
AlertRoutes = Callable[[Alert], Sequence[str]]


def no_routes(alert: Alert) -> Sequence[str]:
    """The routes without webhook endpoints: no alert is queued for delivery."""
    return ()


@dataclass(frozen=True, slots=True)
class BookingBatch:
    """The bookings of a batch, in input order, and the alerts it fired."""

    bookings: list[Booking]
    alerts: list[Alert]


class LedgerStore(Protocol):
    """Durable storage of entries, budgets, reservations and alerts.

    Every method raises ``BackendUnavailableError`` when the storage fails. A write
    method returns only once its batch is durably committed.
    """

    async def book(
        self,
        pending: Sequence[PendingEntry],
        rule: AlertRule,
        now: datetime,
        routes: AlertRoutes = no_routes,
    ) -> BookingBatch:
        """Book a batch in one transaction.

        Each entry is stored unless its request id is stored already (the first
        one stored wins, also within the batch and across concurrent batches), and
        its reservation, if any, is released. Then, for every budget of the new
        entries' scopes and period, ``rule`` runs on the spend there and the
        thresholds already fired; each threshold it returns is stored as an alert
        fired at ``now``, unless that alert exists already, and queued as a
        pending delivery (due at ``now``) to each endpoint ``routes`` names for it.
        """
        ...

    async def reserve(
        self, requests: Sequence[ReservationRequest[PlanT]]
    ) -> list[PlanT]:
        """Decide on and reserve a batch, in order, in one transaction.

        For each request, the budgets of its scopes and their usage are read
        while no other decision on those budgets can run, so that each decision
        sees every reservation made before it. Returns each ``decide`` result.
        """
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete reservations expired at ``now``; returns how many."""
        ...

    async def release(self, reservation_id: str, now: datetime) -> bool:
        """Delete one reservation unexpired at ``now``, booking nothing.

        Returns whether it was live (not unknown, settled or expired).
        """
        ...

    async def summarize(self, query: ReportQuery) -> LedgerSummary:
        """Aggregate the entries that ``query`` selects."""
        ...

    async def spent_micros(self, scope: BudgetScope, period: Period) -> int:
        """Cost booked in ``scope`` within ``period``."""
        ...

    async def budget_usages(
        self,
        scopes: Sequence[BudgetScope],
        periods: Mapping[BudgetPeriod, Period],
        now: datetime,
    ) -> list[BudgetUsage]:
        """The budgets of ``scopes``, each with its usage in its period, read only.

        Reservations count when unexpired at ``now``; nothing is locked or reserved.
        Budgets come in the store's fixed order (scope kind, scope, period).
        """
        ...

    async def put_budget(self, budget: Budget) -> None:
        """Create or replace the budget of ``budget.scope`` and ``budget.period``."""
        ...

    async def budgeted_scopes(self) -> frozenset[BudgetScope]:
        """Every scope that holds a budget, hard or soft, of any period."""
        ...

    async def alerts(self, tenant_id: str, since: datetime | None) -> list[Alert]:
        """Alerts fired at or after ``since`` (all if None), oldest first.

        ``tenant_id`` non-empty keeps the alerts of that tenant's scopes.
        """
        ...

    async def ping(self) -> bool:
        """Whether the storage answers a trivial query."""
        ...

    async def close(self) -> None:
        """Release the storage; the store is unusable afterwards."""
        ...


class DeliveryState(enum.Enum):
    """Where the delivery of one alert to one webhook endpoint stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of an alert to an endpoint, as the delivery log keeps it.

    Attributes:
        attempt: 1 for the first attempt, then 2, 3, ...
        http_status: the receiver's HTTP status; 0 when no response came.
        error: why the attempt failed without a response, or how a response was
            unacceptable; empty for a delivered one. Never holds the URL.
        latency: from sending the request to its answer (or failure).
    """

    attempt: int
    attempted_at: datetime
    http_status: int
    error: str
    latency: timedelta


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """An alert's delivery to one endpoint and the log of its attempts.

    Attributes:
        created_at: when it was queued (the alert's ``fired_at``).
        next_attempt_at: when a PENDING delivery is due next; None otherwise.
        finished_at: when it was DELIVERED or FAILED; None while PENDING.
    """

    alert: Alert
    endpoint: str
    state: DeliveryState
    attempts: tuple[DeliveryAttempt, ...]
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A due delivery leased to one dispatcher for its next attempt.

    Attributes:
        attempt: the number this attempt gets (attempts made so far + 1).
    """

    alert: Alert
    endpoint: str
    attempt: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """An attempt made, and what becomes of the delivery after it.

    Attributes:
        next_attempt_at: when a delivery left PENDING is due again.
    """

    attempt: DeliveryAttempt
    state: DeliveryState
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """Which deliveries to list; empty strings and None select all.

    Attributes:
        since: only deliveries of alerts fired at or after this time.
    """

    alert_id: str = ""
    tenant_id: str = ""
    endpoint: str = ""
    since: datetime | None = None


class AlertOutbox(Protocol):
    """The durable queue of alert deliveries and their log.

    Deliveries are queued by :meth:`LedgerStore.book`, in the transaction that fires
    their alert. Every method raises ``BackendUnavailableError`` when the storage
    fails.
    """

    async def claim_deliveries(
        self,
        endpoints: Sequence[str],
        now: datetime,
        lease_until: datetime,
        owner: str,
        limit: int,
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due PENDING deliveries to ``owner``.

        Due: to one of ``endpoints``, ``next_attempt_at <= now``, and not leased
        (or its lease ended by ``now``). Each is leased until ``lease_until``;
        dispatchers sharing the storage never claim the same delivery at once.
        """
        ...

    async def finish_attempt(
        self, claimed: ClaimedDelivery, owner: str, outcome: AttemptOutcome
    ) -> bool:
        """Log an attempt and move its delivery on, releasing the lease.

        Returns False, changing nothing, when ``owner`` no longer holds the lease
        (it ended, and another dispatcher claimed the delivery).
        """
        ...

    async def deliveries(self, query: DeliveryQuery) -> list[AlertDelivery]:
        """The selected deliveries with their attempts, oldest alert first."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What an endpoint answered.

    Attributes:
        retry_after: the ``Retry-After`` the receiver asked for, in seconds;
            None when absent or not a number of seconds.
    """

    status: int
    retry_after: float | None = None


class WebhookTransportError(Exception):
    """No HTTP response: connection refused or reset, timeout, TLS failure.

    The message says what happened without the URL (which can hold a secret).
    """


class WebhookSender(Protocol):
    """Posts one request to a webhook endpoint."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> WebhookResponse:
        """POST ``body`` with ``headers``; redirects are not followed.

        Raises:
            WebhookTransportError: no response came.
        """
        ...

    async def close(self) -> None:
        """Release connections; the sender is unusable afterwards."""
        ...


class AlertDeliveryRouter(Protocol):
    """What the ledger asks of webhook delivery when it books."""

    def routes(self, alert: Alert) -> Sequence[str]:
        """The endpoints a new alert is queued for, in its booking transaction."""
        ...

    def fired(self, alerts: Sequence[Alert]) -> None:
        """Alerts (and their deliveries) were just committed: deliver them soon."""
        ...
