"""The counter store port and the vocabulary it speaks.

Amounts cross this port as integers in *scaled units*: one request or one token is
:data:`SCALE` scaled units. :data:`SCALE` is the number of milliseconds in a minute,
so a bucket refilling at ``R`` per minute gains exactly ``R`` scaled units per
millisecond: refill is integer arithmetic on integer milliseconds, with no rounding
drift however often a bucket is touched. The largest plausible level (150M tokens
per minute with a burst of 8) stays below 2**53, so a Lua port on Redis doubles is
exact too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

SCALE = 60_000


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
        rate_per_minute: the refill rate in units per minute (at least 1), which is
            also the refill in scaled units per millisecond.
        amount: scaled units to take; negative gives units back (never above capacity).
    """

    bucket: BucketKey
    capacity: int
    rate_per_minute: int
    amount: int


@dataclass(frozen=True, slots=True)
class DebitOutcome:
    """The result of a store operation.

    Attributes:
        applied: whether the amounts were taken.
        levels: each bucket's level after the operation, in scaled units and in the
            order of the debits; negative when a settlement charged more than it held.
    """

    applied: bool
    levels: tuple[int, ...]


class CounterStore(Protocol):
    """Token-bucket levels shared by every replica of the service."""

    @property
    def backend(self) -> str:
        """The backend's name for status pages ("memory", "redis")."""
        ...

    async def debit(
        self, debits: Sequence[BucketDebit], *, enforce: bool
    ) -> DebitOutcome:
        """Refill, then debit every bucket in one atomic step.

        With ``enforce`` the amounts are taken all-or-nothing: only if every bucket
        holds at least its amount; otherwise nothing changes. Without ``enforce``
        they are always taken (settling actual usage), so a level may go negative.
        Zero amounts without ``enforce`` read the levels. The bucket keys must be
        distinct.

        Raises:
            BackendUnavailableError: the backend could not be reached.
        """
        ...

    async def ping(self) -> bool:
        """Whether the backend answers; for health checks."""
        ...
