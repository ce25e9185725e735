"""Budget checks the ledger does not answer: unbudgeted tenants, and outages.

When the ledger answers that a tenant holds no budget at all (no global budget,
none at any scope of the tenant), it says for how long that holds
(``tenant_unbudgeted_seconds``, the costs replicas' refresh interval), and
:class:`EstimatingLedger` allows that tenant's requests without asking until it
passes: each would be allowed with nothing reserved. A budget set meanwhile binds
once it passes, or at once when it was set through this gateway (a key's budget,
:meth:`EstimatingLedger.budget_set`).

The written policy for the costs service (DESIGN, "when it fails or its breaker is
open"): usage records wait in the durable outbox, and CheckBudget uses the local
spend estimate. :class:`EstimatingLedger` wraps the ledger client and keeps, per
principal, what the ledger last answered for it about a hard budget: the
micro-dollars left after that reservation. While the ledger is unreachable, each
budget check of that principal is decided here: the request's worst-case cost by
the gateway's own price table (every input token uncached, every output token
used, the ledger's rule) is added to what this gateway has let through for it
since, and the request is refused with BUDGET_EXCEEDED once that would pass what
was left.

The estimate is per gateway process and per principal: a tenant's budget shared by
several users or replicas is spent faster than one process sees, and the
remainder it starts from is the tightest of the principal's budgets (a soft one
included). A principal the ledger has not answered for since start, or one without
a hard budget, is checked by no one until the ledger is back (the caller's
fallback applies: the check passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from services.core.clock import Clock
from services.core.pricing import PricingTable, TokenUsage, UnknownModelError
from services.gateway.domain import BudgetVerdict, Principal, RecordResult, UsageRecord
from services.gateway.ports import DependencyUnavailableError, LedgerPort

_log = structlog.get_logger(__name__)


# The answer for a tenant the ledger said holds no budget: allowed, nothing reserved.
_UNBUDGETED = BudgetVerdict(allowed=True)
# Tenants remembered as holding no budget; past this many, the memory starts over.
_MAX_UNBUDGETED_TENANTS = 10_000


@dataclass
class _Remainder:
    """A principal's hard budget as last answered, and what was let through since."""

    left_micros: int
    admitted_micros: int = 0


class EstimatingLedger:
    """A :class:`LedgerPort` whose budget checks outlive the ledger's outages."""

    def __init__(self, ledger: LedgerPort, prices: PricingTable, clock: Clock) -> None:
        self._ledger = ledger
        self._prices = prices
        self._clock = clock
        # One entry per principal with a hard budget: bounded by the keys in use.
        self._remainders: dict[tuple[str, str, str, str], _Remainder] = {}
        # Tenants the ledger said hold no budget, until when (monotonic seconds).
        self._unbudgeted_until: dict[str, float] = {}

    def budget_set(self, tenant_id: str) -> None:
        """A budget was set in ``tenant_id`` through this gateway: check it again."""
        self._unbudgeted_until.pop(tenant_id, None)

    async def record(self, record: UsageRecord) -> RecordResult:
        """Book one request's usage (the ledger's own call)."""
        return await self._ledger.record(record)

    async def release_budget(self, request_id: str, reservation_id: str) -> None:
        """Release a reservation (the ledger's own call)."""
        await self._ledger.release_budget(request_id, reservation_id)

    async def check_budget(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
    ) -> BudgetVerdict:
        """The ledger's verdict; while it is unreachable, the local estimate's.

        Raises:
            DependencyUnavailableError: the ledger is unreachable and nothing is
                known to estimate from (no hard budget answered for the principal
                since start, or a model without a price).
        """
        key = (
            principal.tenant_id,
            principal.service,
            principal.user_id,
            principal.key_id,
        )
        now = self._clock.monotonic()
        if self._unbudgeted_until.get(principal.tenant_id, 0.0) > now:
            return _UNBUDGETED
        try:
            verdict = await self._ledger.check_budget(
                request_id, principal, model, input_tokens, max_output_tokens
            )
        except DependencyUnavailableError:
            remainder = self._remainders.get(key)
            if remainder is None:
                raise
            return self._estimate(remainder, model, input_tokens, max_output_tokens)
        # A reservation or a refusal means a hard budget applies.
        if verdict.reservation_id or not verdict.allowed:
            self._remainders[key] = _Remainder(verdict.remaining_micros)
        else:
            self._remainders.pop(key, None)
        if verdict.tenant_unbudgeted_seconds > 0:
            if len(self._unbudgeted_until) >= _MAX_UNBUDGETED_TENANTS:
                self._unbudgeted_until.clear()
            self._unbudgeted_until[principal.tenant_id] = (
                now + verdict.tenant_unbudgeted_seconds
            )
        return verdict

    def _estimate(
        self,
        remainder: _Remainder,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
    ) -> BudgetVerdict:
        try:
            worst = self._prices.cost_micros(
                model,
                TokenUsage(input_tokens, 0, max_output_tokens),
                at=datetime.fromtimestamp(self._clock.now(), UTC),
                batch=False,
            )
        except UnknownModelError as error:
            raise DependencyUnavailableError("costs", "no local price") from error
        left = remainder.left_micros - remainder.admitted_micros
        if worst > left:
            _log.warning("budget_refused_by_local_estimate", model=model)
            return BudgetVerdict(
                allowed=False,
                description=(
                    f"hard budget (estimated while the ledger is unreachable): "
                    f"{max(left, 0)} micro-dollars left, {worst} needed"
                ),
            )
        remainder.admitted_micros += worst
        return BudgetVerdict(allowed=True)
