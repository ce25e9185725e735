"""A key's own usage: spend and tokens, budgets left, rate-limit headroom.

:class:`UsageReader` answers GetUsage (and the HTTP door's ``GET /v1/usage``) for
the key that calls, and only for it: the ledger report is filtered on the key's
public id, the budgets are those of its own chain of scopes, and the headroom is
that of its own buckets. The ledger is required (no usage without it); the rate
limiter is not: when it cannot answer, the headroom is reported unknown. It also
answers GetUsageReport, the operators' view of every key (the admin key is checked
by the server's envelope, not here).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Protocol

from services.core.errors import FieldViolation, InvalidArgumentError, UnavailableError
from services.gateway.domain import Principal, RateHeadroom
from services.gateway.ports import DependencyUnavailableError


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Totals under one label: a model name or a day (``YYYY-MM-DD``)."""

    key: str
    requests: int
    cost_micros: int
    saved_micros: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """A key's ledger entries over a window, totalled and broken down.

    Attributes:
        start: the window's start, seconds since the Unix epoch (None: none).
        end: the window's end, exclusive.
    """

    start: float | None
    end: float
    requests: int
    cost_micros: int
    saved_micros: int
    by_model: tuple[UsageLine, ...]
    by_day: tuple[UsageLine, ...]
    currency_code: str


class ReportGrouping(enum.Enum):
    """What the lines of an operator's usage report are grouped by."""

    TENANT = "tenant"
    API_KEY = "api_key"
    USER = "user"
    SERVICE = "service"
    MODEL = "model"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The ledger's entries over a window, grouped one way, for an operator.

    Attributes:
        start: the window's start, seconds since the Unix epoch (None: none).
        end: the window's end, exclusive.
        total: the totals of every line, labelled "total".
    """

    start: float | None
    end: float
    group_by: ReportGrouping
    lines: tuple[UsageLine, ...]
    total: UsageLine
    cache_saved_micros: int
    routing_saved_micros: int
    batch_saved_micros: int
    currency_code: str


class BudgetScopeKind(enum.Enum):
    """What a budget covers."""

    GLOBAL = "global"
    TENANT = "tenant"
    SERVICE = "service"
    USER = "user"
    KEY = "key"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget of a key's scopes in its current period (amounts in micros).

    Attributes:
        subject: the tenant, service, user or key id covered ("" for the global
            budget).
        period: "day" or "month".
        resets_at: the period's end, seconds since the Unix epoch.
    """

    scope: BudgetScopeKind
    subject: str
    period: str
    hard: bool
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    resets_at: float


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """What GetUsage answers.

    Attributes:
        budgets: the budgets of the key's tenant, service, user and of the key;
            an operator's global budget is not shown (it would tell one tenant
            about others' spend) but counts in ``budget_remaining_micros``.
        budget_remaining_micros: the least left in any hard budget of the key's
            scopes; None when no hard budget applies.
        headroom: per metric, the tightest of the key's buckets now; None when
            the rate limiter could not answer.
    """

    principal: Principal
    totals: UsageTotals
    budgets: tuple[BudgetState, ...]
    budget_remaining_micros: int | None
    headroom: tuple[RateHeadroom, ...] | None


class UsageLedger(Protocol):
    """What the ledger tells about one key."""

    async def key_usage(
        self, principal: Principal, start: float | None, end: float | None
    ) -> UsageTotals:
        """The key's entries in ``[start, end)``; both None: the current month."""
        ...

    async def budget_states(self, principal: Principal) -> list[BudgetState]:
        """Every budget of the key's chain of scopes, broadest first."""
        ...

    async def report(
        self,
        tenant_id: str,
        start: float | None,
        end: float | None,
        group_by: ReportGrouping,
    ) -> UsageReport:
        """Every key's entries in ``[start, end)``, grouped by ``group_by``.

        Both None: the current month. ``tenant_id`` empty: every tenant.
        """
        ...


class HeadroomSource(Protocol):
    """What the rate limiter tells about one key's buckets, without debiting."""

    async def headroom(
        self, principal: Principal, model: str
    ) -> tuple[RateHeadroom, ...]:
        """Per metric, the tightest of the key's buckets (and ``model``'s, if set)."""
        ...


class UsageReader:
    """Answers a key's usage from the ledger and the rate limiter."""

    def __init__(self, ledger: UsageLedger, limiter: HeadroomSource) -> None:
        self._ledger = ledger
        self._limiter = limiter

    async def usage(
        self,
        principal: Principal,
        start: float | None,
        end: float | None,
        model: str = "",
    ) -> KeyUsage:
        """The key's usage in ``[start, end)`` (both None: the current month).

        Raises:
            InvalidArgumentError: ``end`` is not after ``start``, or the key has
                no public id to report under.
            UnavailableError: the ledger could not answer.
        """
        if start is not None and end is not None and end <= start:
            raise InvalidArgumentError(
                [FieldViolation("end_time", "must be after start_time")]
            )
        if not principal.key_id:
            # Without an id, a filter on it would report every unnamed entry.
            raise InvalidArgumentError(
                [FieldViolation("authorization", "this key has no public id")]
            )
        totals, budgets, headroom = await asyncio.gather(
            self._ledger.key_usage(principal, start, end),
            self._ledger.budget_states(principal),
            self._headroom(principal, model),
            return_exceptions=True,
        )
        for outcome in (totals, budgets, headroom):
            if isinstance(outcome, DependencyUnavailableError):
                raise _ledger_unavailable(outcome) from outcome
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(totals, UsageTotals)
        assert isinstance(budgets, list)
        assert not isinstance(headroom, BaseException)
        hard = [budget.remaining_micros for budget in budgets if budget.hard]
        return KeyUsage(
            principal=principal,
            totals=totals,
            budgets=tuple(b for b in budgets if b.scope is not BudgetScopeKind.GLOBAL),
            budget_remaining_micros=min(hard) if hard else None,
            headroom=headroom,
        )

    async def report(
        self,
        tenant_id: str,
        start: float | None,
        end: float | None,
        group_by: ReportGrouping,
    ) -> UsageReport:
        """An operator's report of every key (or one tenant's) in ``[start, end)``.

        Raises:
            UnavailableError: the ledger could not answer.
        """
        try:
            return await self._ledger.report(tenant_id, start, end, group_by)
        except DependencyUnavailableError as error:
            raise _ledger_unavailable(error) from error

    async def _headroom(
        self, principal: Principal, model: str
    ) -> tuple[RateHeadroom, ...] | None:
        try:
            return await self._limiter.headroom(principal, model)
        except DependencyUnavailableError:
            return None


def _ledger_unavailable(error: DependencyUnavailableError) -> UnavailableError:
    return UnavailableError(
        "the ledger cannot answer now; try again shortly",
        reason="LEDGER_UNAVAILABLE",
        retry_after=max(1.0, error.retry_after),
    )
