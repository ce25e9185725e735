"""The ledger's storage port and the records that cross it.

A :class:`LedgerStore` keeps booked entries (idempotent on request id) and budgets,
and aggregates spend. SQLite implements it today; Postgres and atomic budget
reservations plug in behind the same port later.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.costs.pricing import TokenUsage


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
class Booking:
    """The entry stored under a request id, and whether this call created it."""

    entry: LedgerEntry
    created: bool


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


class LedgerStore(Protocol):
    """Durable storage of ledger entries and budgets.

    Every method raises ``BackendUnavailableError`` when the storage fails.
    """

    async def add_entry(self, entry: LedgerEntry) -> Booking:
        """Store ``entry`` unless its request id is stored already.

        Returns the stored entry: ``entry`` itself (``created=True``) or, for a
        known request id, the entry first stored under it (``created=False``).
        Concurrent calls with one request id store exactly one entry.
        """
        ...

    async def summarize(self, query: ReportQuery) -> LedgerSummary:
        """Aggregate the entries that ``query`` selects."""
        ...

    async def spent_micros(
        self, scope: BudgetScope, start: datetime, end: datetime
    ) -> int:
        """Cost booked in ``scope`` with ``start <= occurred_at < end``."""
        ...

    async def put_budget(self, budget: Budget) -> None:
        """Create or replace the budget of ``budget.scope`` and ``budget.period``."""
        ...

    async def budgets_for(self, scopes: Sequence[BudgetScope]) -> list[Budget]:
        """Every budget set on one of ``scopes``, all periods."""
        ...

    async def ping(self) -> bool:
        """Whether the storage answers a trivial query."""
        ...

    async def close(self) -> None:
        """Release the storage; the store is unusable afterwards."""
        ...
