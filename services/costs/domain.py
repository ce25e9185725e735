"""The cost ledger: booking usage, budgets and reports, in integer micro-dollars.

Costs follow the one rule of :mod:`services.core.pricing` (integers, one rounding,
up). Savings are booked next to the cost, by kind:

- a cache hit (EXACT or SEMANTIC) costs 0 and saves what the call would have cost;
- a batch request saves the batch discount (full price minus batch price);
- a request routed away from a known ``requested_model`` saves the requested
  model's cost minus the actual cost, when positive.

A cache hit books only the cache saving. Budget periods are calendar days and months
in the ledger's time zone.

Budgets hold under concurrency: CheckBudget reserves a request's worst-case cost in
the same store transaction that reads every budget of the caller's chain of scopes
(global, tenant, tenant+service, tenant+user) with its spend and live reservations,
so N concurrent checks can never together pass a hard budget. Record settles the
reservation (its spend replaces it, at actual cost); a reservation that no Record
settles stops counting when it expires. Alerts fire in the transaction that books
the spend crossing a threshold, once per budget, period and threshold; the same
transaction queues each for the webhook endpoints that want it (``webhooks.py``).

Most callers have no budget at all, and for them that transaction decides nothing:
each replica keeps the set of scopes that hold a budget (read from the store every
``budget_refresh``, and at once for the budgets it sets itself), and a check whose
chain of scopes meets none of them is allowed without touching the store, reserving
nothing, as the transaction would have. A budget set through another replica
applies here from its next read: within ``budget_refresh``. When no budget covers
the caller's tenant at all, the verdict says so for one ``budget_refresh``
(``tenant_unbudgeted_for``), and the gateway allows that tenant's requests without
asking until it passes: a new budget binds everywhere within two intervals.
Budgets are replaced, never deleted, so the set only grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog

from services.core.clock import Clock
from services.core.errors import BackendUnavailableError
from services.core.pricing import (
    PricingTable,
    TokenUsage,
    UnknownModelError,
    compute_cost_micros,
)
from services.costs.alerts import AlertHub, AlertWatch
from services.costs.batching import GroupCommit
from services.costs.ports import (
    Alert,
    AlertDeliveryRouter,
    Booking,
    Budget,
    BudgetPeriod,
    BudgetScope,
    BudgetUsage,
    CacheStatus,
    LedgerEntry,
    LedgerStore,
    LedgerSummary,
    PendingEntry,
    Period,
    ReportQuery,
    ReservationRequest,
    ScopeKind,
    no_routes,
)

DEFAULT_ALERT_THRESHOLDS_PERCENT = (50, 75, 90, 100)
DEFAULT_RESERVATION_TTL = timedelta(minutes=15)
DEFAULT_BUDGET_REFRESH = timedelta(seconds=1)
DEFAULT_MAX_BATCH = 512
_GLOBAL = BudgetScope(ScopeKind.GLOBAL)
# Expired reservations no longer count; they are deleted at most this often.
_PURGE_INTERVAL = timedelta(minutes=1)
# How far back each poll for other replicas' alerts looks: commits that become
# visible late, and replicas' clocks that disagree, within this are still caught.
ALERT_FOLLOW_WINDOW = timedelta(minutes=1)
_MAX_CACHED_DAYS = 64

_log = structlog.get_logger("tollgate.costs")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request was made for, and the public id of the key it came with."""

    tenant_id: str
    service: str
    user_id: str
    api_key_id: str = ""


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
    reservation_id: str = ""


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What was booked under a request id; ``duplicate`` if booked before.

    Attributes:
        reservation_settled: this call released the record's live reservation.
    """

    cost_micros: int
    saved_micros: int
    currency_code: str
    duplicate: bool
    reservation_settled: bool


@dataclass(frozen=True, slots=True)
class Report:
    """Spend and savings over a range, with the average rounded half up.

    Attributes:
        start: the start of the range reported (None: from the beginning).
        end: the end of the range reported, exclusive.
    """

    summary: LedgerSummary
    average_cost_micros: int
    currency_code: str
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget in force and its spend in the current period."""

    budget: Budget
    spent_micros: int


class BudgetDecision(enum.Enum):
    """The answer to a budget check."""

    ALLOW = "allow"
    DENY = "deny"
    DOWNGRADE = "downgrade"


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """A request about to be sent upstream, to check against the budgets."""

    request_id: str
    caller: Caller
    model: str
    input_tokens: int
    max_output_tokens: int
    batch: bool = False


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """A budget check's decision.

    Attributes:
        worst_case_cost_micros: the cost reserved (allow, downgrade) or refused
            (deny): every input token uncached and every output token used.
        remaining_micros: micro-dollars left in the tightest budget of the caller
            after this reservation (on a denial: before it), never below 0; 0
            without budgets.
        model: the model the reservation is for; on DOWNGRADE the cheaper one.
        reservation_id: the reservation to settle with Record; empty when nothing
            is reserved (a denial, or no hard budget applies).
        reservation_expires_at: when an unsettled reservation stops counting.
        exceeded_budget: on a denial or downgrade, the hard budget that refused the
            requested model.
        resets_at: on a denial, when that budget's period ends.
        store_checked: False when no scope of the caller holds a budget by the
            replica's set of budgeted scopes, so no store transaction ran.
        tenant_unbudgeted_for: set when no budget covers the caller's tenant at
            all (none global, none at any of its scopes): how long its requests
            may be allowed without asking.
    """

    decision: BudgetDecision
    worst_case_cost_micros: int
    remaining_micros: int
    model: str
    reservation_id: str = ""
    reservation_expires_at: datetime | None = None
    exceeded_budget: Budget | None = None
    resets_at: datetime | None = None
    store_checked: bool = True
    tenant_unbudgeted_for: timedelta | None = None

    @property
    def reserve_micros(self) -> int:
        """What the store reserves for this verdict."""
        return self.worst_case_cost_micros if self.reservation_id else 0


@dataclass(frozen=True, slots=True)
class _Amounts:
    cost_micros: int
    cache_saved_micros: int = 0
    routing_saved_micros: int = 0
    batch_saved_micros: int = 0


class CostLedger:
    """Books usage at model prices, holds budgets, fires alerts and reports spend.

    Concurrent records, and concurrent budget checks, are each grouped into one
    store transaction (group commit); every call returns once durably committed.
    Under load a commit of records first waits up to ``linger_seconds`` for more
    (:class:`~services.costs.batching.GroupCommit`); budget checks never wait.
    Call :meth:`close` to flush what is in flight.
    """

    def __init__(
        self,
        store: LedgerStore,
        pricing: PricingTable,
        clock: Clock,
        zone: ZoneInfo,
        *,
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        budget_refresh: timedelta = DEFAULT_BUDGET_REFRESH,
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_seconds: float = 0.0,
        hub: AlertHub | None = None,
        router: AlertDeliveryRouter | None = None,
    ) -> None:
        self._store = store
        self._pricing = pricing
        self._clock = clock
        self._zone = zone
        self._reservation_ttl = reservation_ttl
        self._hub = hub or AlertHub()
        # Webhook delivery: which endpoints each new alert is queued for (in the
        # booking transaction), and whom to wake once it is committed.
        self._router = router
        self._bookings: GroupCommit[PendingEntry, Booking] = GroupCommit(
            self._book, max_batch, linger_seconds
        )
        self._reservations: GroupCommit[
            ReservationRequest[BudgetVerdict], BudgetVerdict
        ] = GroupCommit(store.reserve, max_batch)
        self._next_purge: datetime | None = None
        # The scopes known to hold a budget: as last read, plus those set here.
        # Trusted only while the last read succeeded; until then every check goes
        # to the store.
        self._budgeted: frozenset[BudgetScope] = frozenset()
        self._budgeted_tenants: frozenset[str] = frozenset()
        self._budgeted_read = False
        self._budget_refresh = budget_refresh
        # Alerts handed to this replica's watchers, by id, with when they fired.
        self._delivered: dict[str, datetime] = {}
        # Budget periods of recent local days: every record needs those of its day.
        self._periods_by_day: dict[date, Mapping[BudgetPeriod, Period]] = {}

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book ``record`` once per request id; a replay returns the first booking.

        The reservation ``record.reservation_id``, if live, is released: the
        booked cost takes its place in every budget.

        Raises:
            UnknownModelError: ``record.model`` has no price at ``occurred_at``.
        """
        occurred_at = record.occurred_at or self._now()
        amounts = self._amounts(record, occurred_at)
        entry = LedgerEntry(
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
            api_key_id=record.caller.api_key_id,
        )
        booking = await self._bookings.submit(
            PendingEntry(
                entry=entry,
                reservation_id=record.reservation_id,
                scopes=scopes_of(record.caller),
                periods=self._periods(occurred_at),
            )
        )
        booked = booking.entry
        # Per request: debug, not info (the gateway's access line has the cost).
        _log.debug(
            "usage_recorded",
            booked_request_id=booked.request_id,
            tenant=booked.tenant_id,
            model=booked.model,
            cost_micros=booked.cost_micros,
            saved_micros=booked.saved_micros,
            duplicate=not booking.created,
            reservation_settled=booking.reservation_settled,
        )
        return RecordResult(
            cost_micros=booked.cost_micros,
            saved_micros=booked.saved_micros,
            currency_code=booked.currency_code,
            duplicate=not booking.created,
            reservation_settled=booking.reservation_settled,
        )

    async def check_budget(self, request: BudgetRequest) -> BudgetVerdict:
        """Decide on a request and reserve its worst-case cost, atomically.

        The worst case prices every input token uncached and every output token
        used (at the batch price for a batch request). It is allowed and reserved
        when it fits every hard budget of the caller's scopes, counting their spend
        and live reservations in the current period. Otherwise, if the refusing
        budget names a ``downgrade_model`` whose worst case is cheaper and fits
        them all, that is reserved (DOWNGRADE); else DENY, and nothing is reserved.
        Without a hard budget the request is allowed and nothing is reserved.

        Raises:
            UnknownModelError: ``request.model`` has no price now.
        """
        now = self._now()
        worst_case = self._worst_case(request.model, request, now)
        await self._purge_if_due(now)
        scopes = scopes_of(request.caller)
        if self._budgeted_read and self._budgeted.isdisjoint(scopes):
            tenant_unbudgeted = (
                _GLOBAL not in self._budgeted
                and request.caller.tenant_id not in self._budgeted_tenants
            )
            return BudgetVerdict(
                decision=BudgetDecision.ALLOW,
                worst_case_cost_micros=worst_case,
                remaining_micros=0,
                model=request.model,
                store_checked=False,
                tenant_unbudgeted_for=(
                    self._budget_refresh if tenant_unbudgeted else None
                ),
            )
        reservation = _Reservation(
            reservation_id=f"rsv_{uuid.uuid4().hex}",
            now=now,
            expires_at=now + self._reservation_ttl,
        )
        verdict = await self._reservations.submit(
            ReservationRequest(
                reservation_id=reservation.reservation_id,
                request_id=request.request_id,
                tenant_id=request.caller.tenant_id,
                service=request.caller.service,
                user_id=request.caller.user_id,
                api_key_id=request.caller.api_key_id,
                model=request.model,
                scopes=scopes,
                periods=self._periods(now),
                now=now,
                expires_at=reservation.expires_at,
                decide=lambda usages: self._decide(
                    request, reservation, worst_case, usages
                ),
            )
        )
        _log.debug(
            "budget_checked",
            checked_request_id=request.request_id,
            tenant=request.caller.tenant_id,
            decision=verdict.decision.value,
            worst_case_cost_micros=verdict.worst_case_cost_micros,
            reservation_id=verdict.reservation_id,
        )
        return verdict

    @property
    def currency_code(self) -> str:
        """The currency of every amount (ISO 4217)."""
        return self._pricing.currency_code

    async def release(self, reservation_id: str) -> bool:
        """Release a reservation whose request booked nothing; books nothing.

        For a request that ended without using a model (a static answer, an
        upstream failure): its worst case stops counting now, not at expiry.
        Returns whether the reservation was live (not unknown, settled or expired).
        """
        released = await self._store.release(reservation_id, self._now())
        _log.info(
            "budget_reservation_released",
            reservation_id=reservation_id,
            released=released,
        )
        return released

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
        self._know_budgeted(frozenset({in_force.scope}))
        spent = await self._store.spent_micros(
            in_force.scope, period_bounds(in_force.period, now, self._zone)
        )
        _log.info(
            "budget_set",
            scope=in_force.scope.kind.value,
            period=in_force.period.value,
            limit_micros=in_force.limit_micros,
            hard=in_force.hard,
        )
        return BudgetStatus(budget=in_force, spent_micros=spent)

    async def report(
        self,
        tenant_id: str,
        start: datetime | None,
        end: datetime | None,
        *,
        api_key_id: str = "",
        current_period: BudgetPeriod | None = None,
    ) -> Report:
        """Spend and savings with ``start <= occurred_at < end`` (``end`` None: now).

        ``tenant_id`` empty reports every tenant, ``api_key_id`` empty every key.
        ``current_period`` replaces ``start`` and ``end`` with the calendar day or
        month containing now, in the ledger's time zone.
        """
        if current_period is not None:
            start, end = period_bounds(current_period, self._now(), self._zone)
        end = end or self._now()
        summary = await self._store.summarize(
            ReportQuery(
                tenant_id=tenant_id, start=start, end=end, api_key_id=api_key_id
            )
        )
        return Report(
            summary=summary,
            average_cost_micros=divide_half_up(summary.cost_micros, summary.requests),
            currency_code=self._pricing.currency_code,
            start=start,
            end=end,
        )

    async def budget_status(self, caller: Caller) -> list[BudgetUsage]:
        """Every budget of the caller's chain of scopes, in its current period.

        Broadest scope first (global, tenant, service, user, key), days before
        months; reservations count while unexpired. Nothing is reserved.
        """
        now = self._now()
        scopes = scopes_of(caller)
        usages = await self._store.budget_usages(scopes, self._periods(now), now)
        rank = {scope: index for index, scope in enumerate(scopes)}
        return sorted(
            usages,
            key=lambda usage: (
                rank.get(usage.budget.scope, len(rank)),
                usage.budget.period is BudgetPeriod.MONTH,
            ),
        )

    async def list_alerts(self, tenant_id: str, since: datetime | None) -> list[Alert]:
        """Alerts fired at or after ``since`` (all if None), oldest first."""
        return await self._store.alerts(tenant_id, since)

    @contextlib.contextmanager
    def watch_alerts(self, tenant_id: str) -> Iterator[AlertWatch]:
        """Receive alerts as they fire, for the duration of the ``with`` block."""
        with self._hub.watch(tenant_id) as watch:
            yield watch

    async def close(self) -> None:
        """Wait until every record and check in flight is committed."""
        await self._bookings.wait_idle()
        await self._reservations.wait_idle()

    async def _book(self, pending: list[PendingEntry]) -> list[Booking]:
        routes = no_routes if self._router is None else self._router.routes
        batch = await self._store.book(pending, thresholds_to_fire, self._now(), routes)
        for alert in batch.alerts:
            _log.warning(
                "budget_alert_fired",
                alert_id=alert.alert_id,
                scope=alert.budget.scope.kind.value,
                tenant=alert.budget.scope.tenant_id,
                period=alert.budget.period.value,
                threshold_percent=alert.threshold_percent,
                spent_micros=alert.spent_micros,
                limit_micros=alert.budget.limit_micros,
            )
        self._deliver(batch.alerts)
        if self._router is not None:
            self._router.fired(batch.alerts)
        return batch.bookings

    async def follow_alerts(self, interval_seconds: float) -> None:
        """Publish to this replica's watchers the alerts other replicas fire.

        Replicas sharing a ledger (Postgres, or processes on one SQLite file) each
        fire the alerts of the records they book; every ``interval_seconds`` this
        reads the alerts of the last :data:`ALERT_FOLLOW_WINDOW` from the store and
        publishes those not yet delivered here, so every watcher of every replica
        sees every alert, once. Runs until cancelled; a failed read is logged and
        retried at the next interval.
        """
        # Fired before this replica followed: its watchers did not exist yet.
        self._remember(await self._recent_alerts())
        while True:
            await asyncio.sleep(interval_seconds)
            self._deliver(await self._recent_alerts())

    async def follow_budgets(self) -> None:
        """Read which scopes hold a budget now and every ``budget_refresh``.

        Until the first read succeeds, and after any read fails (logged, retried at
        the next interval), every budget check is decided in the store. Runs until
        cancelled.
        """
        while True:
            await self.refresh_budgeted_scopes()
            await asyncio.sleep(self._budget_refresh.total_seconds())

    @property
    def budgeted_scope_count(self) -> int:
        """How many scopes this replica knows to hold a budget."""
        return len(self._budgeted)

    async def refresh_budgeted_scopes(self) -> None:
        """Read the scopes that hold a budget (see the module's docstring)."""
        try:
            read = await self._store.budgeted_scopes()
        except BackendUnavailableError as error:
            _log.warning("budgeted_scopes_read_failed", reason=error.reason)
            self._budgeted_read = False
            return
        # A scope set here during the read stays: budgets are never deleted.
        self._know_budgeted(read)
        self._budgeted_read = True

    def _know_budgeted(self, scopes: frozenset[BudgetScope]) -> None:
        self._budgeted |= scopes
        self._budgeted_tenants |= {scope.tenant_id for scope in scopes}

    async def _recent_alerts(self) -> list[Alert]:
        """The alerts of the follow window; none (logged) when the store fails."""
        try:
            return await self._store.alerts("", self._now() - ALERT_FOLLOW_WINDOW)
        except BackendUnavailableError as error:
            _log.warning("alert_follow_failed", reason=error.reason)
            return []

    def _deliver(self, alerts: Sequence[Alert]) -> None:
        """Publish the alerts not delivered here yet, and remember them."""
        fresh = [alert for alert in alerts if alert.alert_id not in self._delivered]
        self._remember(fresh)
        self._hub.publish(fresh)

    def _remember(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            self._delivered[alert.alert_id] = alert.fired_at
        # Ids older than two windows can no longer come back from a poll.
        horizon = self._now() - 2 * ALERT_FOLLOW_WINDOW
        for stale in [i for i, at in self._delivered.items() if at < horizon]:
            del self._delivered[stale]

    def _decide(
        self,
        request: BudgetRequest,
        reservation: _Reservation,
        worst_case: int,
        usages: Sequence[BudgetUsage],
    ) -> BudgetVerdict:
        hard = [usage for usage in usages if usage.budget.hard]
        refusing = next((u for u in hard if not _fits(u, worst_case)), None)
        if refusing is None:
            return _grant(
                BudgetDecision.ALLOW, reservation, request.model, worst_case, usages
            )
        cheaper_model = refusing.budget.downgrade_model
        cheaper = self._downgrade_cost(cheaper_model, request, reservation.now)
        if (
            cheaper is not None
            and cheaper < worst_case
            and all(_fits(usage, cheaper) for usage in hard)
        ):
            return replace(
                _grant(
                    BudgetDecision.DOWNGRADE,
                    reservation,
                    cheaper_model,
                    cheaper,
                    usages,
                ),
                exceeded_budget=refusing.budget,
            )
        return BudgetVerdict(
            decision=BudgetDecision.DENY,
            worst_case_cost_micros=worst_case,
            remaining_micros=_left(refusing, 0),
            model=request.model,
            exceeded_budget=refusing.budget,
            resets_at=refusing.period[1],
        )

    def _worst_case(self, model: str, request: BudgetRequest, at: datetime) -> int:
        usage = TokenUsage(request.input_tokens, 0, request.max_output_tokens)
        return self._pricing.cost_micros(model, usage, at=at, batch=request.batch)

    def _downgrade_cost(
        self, model: str, request: BudgetRequest, at: datetime
    ) -> int | None:
        if not model:
            return None
        try:
            return self._worst_case(model, request, at)
        except UnknownModelError:
            # Priced when the budget was set, no longer now: nothing to offer.
            return None

    async def _purge_if_due(self, now: datetime) -> None:
        if self._next_purge is not None and now < self._next_purge:
            return
        self._next_purge = now + _PURGE_INTERVAL
        purged = await self._store.purge_expired(now)
        if purged:
            _log.info("budget_reservations_expired", count=purged)

    def _amounts(self, record: UsageRecord, at: datetime) -> _Amounts:
        price = self._pricing.price_at(record.model, at)
        full = compute_cost_micros(price, record.usage)
        cost = (
            compute_cost_micros(
                price, record.usage, self._pricing.batch_discount_percent
            )
            if record.batch
            else full
        )
        if record.cache_status.is_hit:
            return _Amounts(cost_micros=0, cache_saved_micros=cost)
        return _Amounts(
            cost_micros=cost,
            routing_saved_micros=self._routing_saving(record, at, cost),
            batch_saved_micros=full - cost,
        )

    def _routing_saving(self, record: UsageRecord, at: datetime, cost: int) -> int:
        if (
            record.requested_model == record.model
            or record.requested_model not in self._pricing.models
        ):
            # "auto", empty or an unpriced name: no requested price to compare.
            return 0
        try:
            requested_cost = self._pricing.cost_micros(
                record.requested_model, record.usage, at=at, batch=record.batch
            )
        except UnknownModelError:
            # Listed, but not yet priced at ``at``.
            return 0
        return max(0, requested_cost - cost)

    def _periods(self, at: datetime) -> Mapping[BudgetPeriod, Period]:
        local_day = at.astimezone(self._zone).date()
        periods = self._periods_by_day.get(local_day)
        if periods is None:
            if len(self._periods_by_day) >= _MAX_CACHED_DAYS:
                self._periods_by_day.clear()
            periods = {
                period: period_bounds(period, at, self._zone) for period in BudgetPeriod
            }
            self._periods_by_day[local_day] = periods
        return periods

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def _local_day(self, at: datetime) -> str:
        return at.astimezone(self._zone).date().isoformat()


def thresholds_to_fire(
    budget: Budget, spent_micros: int, fired: frozenset[int]
) -> list[int]:
    """The alert rule: thresholds reached (spend >= limit x t%) and not yet fired."""
    return [
        threshold
        for threshold in budget.alert_thresholds_percent
        if threshold not in fired
        and spent_micros * 100 >= budget.limit_micros * threshold
    ]


@dataclass(frozen=True, slots=True)
class _Reservation:
    """The id and expiry a check's reservation gets, and when it was decided."""

    reservation_id: str
    now: datetime
    expires_at: datetime


def _grant(
    decision: BudgetDecision,
    reservation: _Reservation,
    model: str,
    amount: int,
    usages: Sequence[BudgetUsage],
) -> BudgetVerdict:
    # Only hard budgets refuse, so only they need the amount reserved.
    reserve = amount > 0 and any(usage.budget.hard for usage in usages)
    return BudgetVerdict(
        decision=decision,
        worst_case_cost_micros=amount,
        remaining_micros=min((_left(u, amount) for u in usages), default=0),
        model=model,
        reservation_id=reservation.reservation_id if reserve else "",
        reservation_expires_at=reservation.expires_at if reserve else None,
    )


def _fits(usage: BudgetUsage, amount: int) -> bool:
    return (
        usage.spent_micros + usage.reserved_micros + amount <= usage.budget.limit_micros
    )


def remaining_micros(usage: BudgetUsage) -> int:
    """What is left of a budget: limit minus spend and reservations, at least 0."""
    return _left(usage, 0)


def _left(usage: BudgetUsage, amount: int) -> int:
    return max(
        0,
        usage.budget.limit_micros - usage.spent_micros - usage.reserved_micros - amount,
    )


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


@functools.lru_cache(maxsize=65_536)
def scopes_of(caller: Caller) -> tuple[BudgetScope, ...]:
    """The caller's chain of scopes: global, tenant, and service, user, key if set."""
    scopes = [
        _GLOBAL,
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
    if caller.api_key_id:
        scopes.append(
            BudgetScope(
                ScopeKind.KEY, tenant_id=caller.tenant_id, api_key_id=caller.api_key_id
            )
        )
    return tuple(scopes)
