"""The cost ledger: booking usage, budgets and reports, in integer micro-dollars.

Costs follow the one rule of :mod:`services.costs.pricing` (integers, one rounding,
up). Savings are booked next to the cost, by kind:

- a cache hit (EXACT or SEMANTIC) costs 0 and saves what the call would have cost;
- a batch request saves the batch discount (full price minus batch price);
- a request routed away from a known ``requested_model`` saves the requested
  model's cost minus the actual cost, when positive.

A cache hit books only the cache saving. Budget periods are calendar days and months
in the ledger's time zone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog

from services.core.clock import Clock
from services.costs.ports import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    LedgerEntry,
    LedgerStore,
    LedgerSummary,
    ReportQuery,
    ScopeKind,
)
from services.costs.pricing import PricingTable, TokenUsage, UnknownModelError

DEFAULT_ALERT_THRESHOLDS_PERCENT = (50, 75, 90, 100)

_log = structlog.get_logger("tollgate.costs")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request was made for."""

    tenant_id: str
    service: str
    user_id: str


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's usage to book; ``occurred_at`` ``None`` means now."""

    request_id: str
    caller: Caller
    model: str
    requested_model: str
    deployment: str
    usage: TokenUsage
    batch: bool
    cache_status: CacheStatus
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What was booked under a request id; ``duplicate`` if booked before."""

    cost_micros: int
    saved_micros: int
    currency_code: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Report:
    """Spend and savings over a range, with the average rounded half up."""

    summary: LedgerSummary
    average_cost_micros: int
    currency_code: str


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget in force and its spend in the current period."""

    budget: Budget
    spent_micros: int


class BudgetDecision(enum.Enum):
    """The answer to a budget check."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """A budget check's decision.

    Attributes:
        worst_case_cost_micros: the request's cost if it uses all its tokens.
        remaining_micros: micro-dollars left in the tightest budget after this
            request (without it on a denial), never below 0; 0 without budgets.
        exceeded_budget: on a denial, the hard budget that refused.
        resets_at: on a denial, when that budget's period ends.
    """

    decision: BudgetDecision
    worst_case_cost_micros: int
    remaining_micros: int
    exceeded_budget: Budget | None = None
    resets_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Amounts:
    cost_micros: int
    cache_saved_micros: int = 0
    routing_saved_micros: int = 0
    batch_saved_micros: int = 0


class CostLedger:
    """Books usage at model prices, checks budgets and reports spend."""

    def __init__(
        self, store: LedgerStore, pricing: PricingTable, clock: Clock, zone: ZoneInfo
    ) -> None:
        self._store = store
        self._pricing = pricing
        self._clock = clock
        self._zone = zone

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book ``record`` once per request id; a replay returns the first booking.

        Raises:
            UnknownModelError: ``record.model`` has no price at ``occurred_at``.
        """
        occurred_at = record.occurred_at or self._now()
        amounts = self._amounts(record, occurred_at)
        booking = await self._store.add_entry(
            LedgerEntry(
                request_id=record.request_id,
                tenant_id=record.caller.tenant_id,
                service=record.caller.service,
                user_id=record.caller.user_id,
                model=record.model,
                requested_model=record.requested_model,
                deployment=record.deployment,
                usage=record.usage,
                batch=record.batch,
                cache_status=record.cache_status,
                cost_micros=amounts.cost_micros,
                cache_saved_micros=amounts.cache_saved_micros,
                routing_saved_micros=amounts.routing_saved_micros,
                batch_saved_micros=amounts.batch_saved_micros,
                currency_code=self._pricing.currency_code,
                occurred_at=occurred_at,
                day=self._local_day(occurred_at),
            )
        )
        entry = booking.entry
        _log.info(
            "usage_recorded",
            booked_request_id=entry.request_id,
            tenant=entry.tenant_id,
            model=entry.model,
            cost_micros=entry.cost_micros,
            saved_micros=entry.saved_micros,
            duplicate=not booking.created,
        )
        return RecordResult(
            cost_micros=entry.cost_micros,
            saved_micros=entry.saved_micros,
            currency_code=entry.currency_code,
            duplicate=not booking.created,
        )

    async def check_budget(
        self, caller: Caller, model: str, input_tokens: int, max_output_tokens: int
    ) -> BudgetVerdict:
        """Check a request's worst-case cost against the budgets of its scopes.

        Nothing is reserved yet: a request is denied when a hard budget's spend in
        its current period plus the worst case exceeds the limit.

        Raises:
            UnknownModelError: ``model`` has no price now.
        """
        now = self._now()
        worst_case = self._pricing.cost_micros(
            model, TokenUsage(input_tokens, 0, max_output_tokens), at=now, batch=False
        )
        remaining: int | None = None
        for budget in await self._store.budgets_for(_scopes_of(caller)):
            start, end = period_bounds(budget.period, now, self._zone)
            spent = await self._store.spent_micros(budget.scope, start, end)
            if budget.hard and spent + worst_case > budget.limit_micros:
                return BudgetVerdict(
                    decision=BudgetDecision.DENY,
                    worst_case_cost_micros=worst_case,
                    remaining_micros=max(0, budget.limit_micros - spent),
                    exceeded_budget=budget,
                    resets_at=end,
                )
            left = max(0, budget.limit_micros - spent - worst_case)
            remaining = left if remaining is None else min(remaining, left)
        return BudgetVerdict(
            decision=BudgetDecision.ALLOW,
            worst_case_cost_micros=worst_case,
            remaining_micros=0 if remaining is None else remaining,
        )

    async def set_budget(self, budget: Budget) -> BudgetStatus:
        """Create or replace a budget; empty thresholds get the defaults.

        Raises:
            UnknownModelError: ``budget.downgrade_model`` is set but has no price.
        """
        now = self._now()
        if budget.downgrade_model:
            self._pricing.price_at(budget.downgrade_model, now)
        thresholds = tuple(sorted(set(budget.alert_thresholds_percent)))
        in_force = replace(
            budget,
            alert_thresholds_percent=thresholds or DEFAULT_ALERT_THRESHOLDS_PERCENT,
        )
        await self._store.put_budget(in_force)
        start, end = period_bounds(in_force.period, now, self._zone)
        spent = await self._store.spent_micros(in_force.scope, start, end)
        _log.info(
            "budget_set",
            scope=in_force.scope.kind.value,
            period=in_force.period.value,
            limit_micros=in_force.limit_micros,
            hard=in_force.hard,
        )
        return BudgetStatus(budget=in_force, spent_micros=spent)

    async def report(
        self, tenant_id: str, start: datetime | None, end: datetime | None
    ) -> Report:
        """Spend and savings with ``start <= occurred_at < end`` (``end`` None: now).

        ``tenant_id`` empty reports every tenant.
        """
        summary = await self._store.summarize(
            ReportQuery(tenant_id=tenant_id, start=start, end=end or self._now())
        )
        return Report(
            summary=summary,
            average_cost_micros=divide_half_up(summary.cost_micros, summary.requests),
            currency_code=self._pricing.currency_code,
        )

    def _amounts(self, record: UsageRecord, at: datetime) -> _Amounts:
        full = self._pricing.cost_micros(record.model, record.usage, at=at, batch=False)
        cost = self._pricing.cost_micros(
            record.model, record.usage, at=at, batch=record.batch
        )
        if record.cache_status.is_hit:
            return _Amounts(cost_micros=0, cache_saved_micros=cost)
        return _Amounts(
            cost_micros=cost,
            routing_saved_micros=self._routing_saving(record, at, cost),
            batch_saved_micros=full - cost,
        )

    def _routing_saving(self, record: UsageRecord, at: datetime, cost: int) -> int:
        if not record.requested_model or record.requested_model == record.model:
            return 0
        try:
            requested_cost = self._pricing.cost_micros(
                record.requested_model, record.usage, at=at, batch=record.batch
            )
        except UnknownModelError:
            # "auto" or an unpriced name: there is no requested price to compare.
            return 0
        return max(0, requested_cost - cost)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def _local_day(self, at: datetime) -> str:
        return at.astimezone(self._zone).date().isoformat()


def divide_half_up(total: int, count: int) -> int:
    """``total / count`` rounded half up, for ``total >= 0``; 0 when ``count`` is 0."""
    if count == 0:
        return 0
    return (2 * total + count) // (2 * count)


def period_bounds(
    period: BudgetPeriod, at: datetime, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """The calendar day or month containing ``at`` in ``zone``, as UTC datetimes."""
    local_day = at.astimezone(zone).date()
    if period is BudgetPeriod.DAY:
        first = local_day
        after = first + timedelta(days=1)
    else:
        first = local_day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return _local_midnight(first, zone), _local_midnight(after, zone)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _scopes_of(caller: Caller) -> list[BudgetScope]:
    scopes = [
        BudgetScope(ScopeKind.GLOBAL),
        BudgetScope(ScopeKind.TENANT, tenant_id=caller.tenant_id),
    ]
    if caller.service:
        scopes.append(
            BudgetScope(
                ScopeKind.SERVICE, tenant_id=caller.tenant_id, service=caller.service
            )
        )
    if caller.user_id:
        scopes.append(
            BudgetScope(
                ScopeKind.USER, tenant_id=caller.tenant_id, user_id=caller.user_id
            )
        )
    return scopes
