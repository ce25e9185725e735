"""The counter store port and the vocabulary it speaks.

Everything replicas must agree on lives behind this port: bucket levels, the
reservations awaiting Reconcile, and each upstream model's adaptive backoff. Each
method is one atomic step of the backend (one Lua script call on Redis), so N
replicas sharing one store decide exactly as one would.

Amounts cross this port as integers in *scaled units*: one request or one token is
:data:`SCALE` scaled units. :data:`SCALE` is the number of milliseconds in a minute,
so a bucket refilling at ``R`` per minute gains exactly ``R`` scaled units per
millisecond: refill is integer arithmetic on integer milliseconds, with no rounding
drift however often a bucket is touched. The largest plausible level (150M tokens
per minute with a burst of 8) stays below 2**53, so Lua on Redis doubles is exact
too. Backoff factors are integers in thousandths (:data:`FACTOR_SCALE`) for the same
reason: both backends compute the same effective rate to the unit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

SCALE = 60_000
FACTOR_SCALE = 1_000
# The largest backoff factor, in thousandths: the global rate falls to at most 1/8.
MAX_FACTOR = 8 * FACTOR_SCALE


class Layer(enum.Enum):
    """The layer a bucket belongs to."""

    USER = "user"
    SERVICE = "service"
    GLOBAL = "global"


class Metric(enum.Enum):
    """What a bucket counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class BucketKey:
    """Names one bucket: a layer, a key within it (user, service, model), a metric."""

    layer: Layer
    key: str
    metric: Metric


@dataclass(frozen=True, slots=True)
class BucketDebit:
    """One bucket's part of a store operation.

    Attributes:
        bucket: which bucket.
        capacity: the most the bucket holds, in scaled units; a new bucket starts full.
        rate_per_minute: the configured refill rate in units per minute (at least 1),
            which is also the refill in scaled units per millisecond.
        amount: scaled units to take; negative gives units back (never above capacity).
        backoff_model: when set, the rate in force is ``rate_per_minute`` divided by
            this model's backoff factor (at least 1).
    """

    bucket: BucketKey
    capacity: int
    rate_per_minute: int
    amount: int
    backoff_model: str = ""


@dataclass(frozen=True, slots=True)
class NewReservation:
    """A reservation to record when an acquire is applied.

    Attributes:
        reservation_id: the id handed to the caller.
        estimated_tokens: the tokens taken from each tokens bucket (whole tokens).
        ttl_ms: after this long an unsettled reservation is forgotten and the
            estimate stands.
    """

    reservation_id: str
    estimated_tokens: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class DebitOutcome:
    """The result of an acquire or a read.

    Attributes:
        applied: whether the amounts were taken (always False for a read).
        levels: each bucket's level after the operation, in scaled units and in the
            order of the debits; negative when a settlement charged more than it held.
        rates: each bucket's refill rate in force, per minute (after backoff).
        paused_ms: above zero when a model of the request is paused by an upstream
            Retry-After; nothing was taken and this is the longest time left.
    """

    applied: bool
    levels: tuple[int, ...]
    rates: tuple[int, ...]
    paused_ms: int = 0


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    """The result of settling a reservation.

    Attributes:
        found: False when the reservation was unknown, already settled or expired.
        refunded_tokens: estimated minus actual tokens, given back to (or, when
            negative, charged on) every tokens bucket the reservation debited; 0
            when it debited none.
    """

    found: bool
    refunded_tokens: int = 0


@dataclass(frozen=True, slots=True)
class BackoffChange:
    """How to change a model's backoff factor, in thousandths.

    The new factor is ``factor * numerator // denominator``, clamped to
    ``[FACTOR_SCALE, MAX_FACTOR]``; the policy lives in the domain.
    """

    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class BackoffState:
    """One model's adaptive backoff as stored.

    Attributes:
        model: the upstream model.
        factor: the backoff factor in thousandths (1000 means no backoff).
        paused_ms: how long the model stays paused from now; 0 when not paused.
    """

    model: str
    factor: int
    paused_ms: int


class CounterStore(Protocol):
    """Token-bucket levels, reservations and backoffs shared by every replica."""

    @property
    def backend(self) -> str:
        """The backend's name for status pages ("memory", "redis")."""
        ...

    async def acquire(
        self,
        debits: Sequence[BucketDebit],
        *,
        models: Sequence[str],
        reservation: NewReservation | None,
    ) -> DebitOutcome:
        """Refill, then take every amount all-or-nothing in one atomic step.

        Nothing changes unless every bucket holds at least its amount and none of
        ``models`` is paused. When applied and ``reservation`` is given, the
        reservation is recorded with the tokens buckets among ``debits``. The bucket
        keys must be distinct.

        Raises:
            BackendUnavailableError: the backend could not be reached.
        """
        ...

    async def read(self, debits: Sequence[BucketDebit]) -> DebitOutcome:
        """The refilled levels and rates in force, changing nothing.

        Raises:
            BackendUnavailableError: the backend could not be reached.
        """
        ...

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        """Forget a reservation and refund or charge its tokens buckets in one step.

        A charge is taken even if it drives a bucket below zero: the tokens were
        spent, so later requests wait for them.

        Raises:
            BackendUnavailableError: the backend could not be reached.
        """
        ...

    async def report_upstream(
        self, model: str, change: BackoffChange, pause_ms: int
    ) -> BackoffState:
        """Change a model's backoff factor and extend its pause to ``pause_ms``.

        A pause never shortens: the model stays paused until the later of the
        current pause and now plus ``pause_ms``.

        Raises:
            BackendUnavailableError: the backend could not be reached.
        """
        ...

    async def backoffs(self) -> list[BackoffState]:
        """Every model with a factor above 1 or an active pause, sorted by model.

        Raises:
            BackendUnavailableError: the backend could not be reached.
        """
        ...

    async def ping(self) -> bool:
        """Whether the backend answers; for health checks. Never raises."""
        ...


def slowest_rate(debit: BucketDebit) -> int:
    """The slowest refill a bucket can have: its rate under the largest backoff.

    Stores forget a bucket once it has surely refilled to capacity (a full bucket is
    the same as an unknown one); timing that on the slowest rate keeps a later
    backoff from making a bucket look full too early.
    """
    if not debit.backoff_model:
        return debit.rate_per_minute
    return max(1, debit.rate_per_minute * FACTOR_SCALE // MAX_FACTOR)
