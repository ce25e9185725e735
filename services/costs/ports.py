"""The ledger's storage port and the records that cross it.

A :class:`LedgerStore` keeps booked entries (idempotent on request id), budgets,
budget reservations and fired alerts, and aggregates spend. Its two write paths take
batches, so that the ledger can group concurrent calls into one durable commit, and
run the budget rules that the ledger hands them *inside* their transaction: that is
what makes a reservation atomic across the chain of scopes and an alert fire once.
SQLite and Postgres implement it (``adapters/``).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
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
    """Entries with ``start <= occurred_at < end``, of one tenant unless empty."""

    tenant_id: str
    start: datetime | None
    end: datetime


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


class ScopeKind(enum.Enum):
    """What a budget covers."""

    GLOBAL = "global"
    TENANT = "tenant"
    SERVICE = "service"
    USER = "user"


class BudgetPeriod(enum.Enum):
    """The calendar period a budget resets on, in the ledger's time zone."""

    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """A budget scope; fields that do not apply to ``kind`` are empty."""

    kind: ScopeKind
    tenant_id: str = ""
    service: str = ""
    user_id: str = ""


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
        )
    )
    return "alert_" + hashlib.sha256(key.encode()).hexdigest()[:24]


# The alert rule: given a budget, its spend in a period and the thresholds already
# fired there, the thresholds to fire now.
AlertRule = Callable[[Budget, int, frozenset[int]], Sequence[int]]


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
        self, pending: Sequence[PendingEntry], rule: AlertRule, now: datetime
    ) -> BookingBatch:
        """Book a batch in one transaction.

        Each entry is stored unless its request id is stored already (the first
        one stored wins, also within the batch and across concurrent batches), and
        its reservation, if any, is released. Then, for every budget of the new
        entries' scopes and period, ``rule`` runs on the spend there and the
        thresholds already fired; each threshold it returns is stored as an alert
        fired at ``now``, unless that alert exists already.
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

    async def put_budget(self, budget: Budget) -> None:
        """Create or replace the budget of ``budget.scope`` and ``budget.period``."""
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
