"""Admission by token buckets per user and per upstream model, with adaptive backoff.

A request touches the buckets of its user (the user's tier sets requests and tokens
per minute) and of its upstream model (the account's limits, divided by the model's
backoff factor). All of them are debited in one all-or-nothing store operation:
one request from each requests bucket and the estimated tokens from each tokens
bucket. Capacity is the rate times the burst multiplier; buckets refill
continuously at rate / 60 per second. Bucket arithmetic is integer, in the scaled
units of :mod:`services.ratelimit.ports`.

An admitted request holds a reservation until Reconcile settles its tokens buckets
with the tokens actually used, or until it expires and stands as estimated.
"""

from __future__ import annotations

import enum
import math
import secrets
from dataclasses import dataclass

import structlog

from services.core.clock import Clock
from services.core.errors import FieldViolation, InvalidArgumentError
from services.ratelimit.limits import RateLimits, RateRule
from services.ratelimit.ports import (
    SCALE,
    BucketDebit,
    BucketKey,
    CounterStore,
    Layer,
    Metric,
)

_log = structlog.get_logger("tollgate.ratelimit")

# Adaptive backoff of seed section 2: x2 per upstream 429 up to x8, x0.9 per success.
_MAX_BACKOFF_FACTOR = 8.0
_THROTTLE_GROWTH = 2.0
_SUCCESS_DECAY = 0.9


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request is for.

    Attributes:
        tenant_id: the organisation that owns the API key; required.
        service: the calling application or feature.
        user_id: the end user; empty when the caller did not say.
        user_tier: the end user's tier; empty or unknown means the default tier.
    """

    tenant_id: str
    service: str = ""
    user_id: str = ""
    user_tier: str = ""

    @property
    def user_key(self) -> str:
        """The user layer's key: ``tenant:user``, or ``tenant:service`` without a user.

        A caller that names no end user is limited as one user per calling service.
        """
        return f"{self.tenant_id}:{self.user_id or self.service}"


class UpstreamOutcome(enum.Enum):
    """What the upstream answered."""

    THROTTLED = "throttled"
    SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class BucketStatus:
    """One bucket as callers see it, in whole units.

    Attributes:
        bucket: which bucket.
        limit_per_minute: the configured rate.
        effective_limit_per_minute: the rate in force (divided by the backoff factor
            on the global layer; 0 while the model is paused).
        capacity: rate times the burst multiplier, rounded down.
        remaining: units available now, rounded down, never negative.
    """

    bucket: BucketKey
    limit_per_minute: int
    effective_limit_per_minute: int
    capacity: int
    remaining: int


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """The decision on one request.

    Attributes:
        allowed: whether every bucket was debited.
        buckets: every bucket the request touched, after the decision.
        reservation_id: on allow, the reservation to reconcile.
        reservation_expires_at: on allow, wall time when the reservation expires.
        retry_after: on deny, seconds until the denying bucket can admit the request.
        denied_by: on deny, the bucket with the longest wait.
    """

    allowed: bool
    buckets: tuple[BucketStatus, ...]
    reservation_id: str = ""
    reservation_expires_at: float | None = None
    retry_after: float | None = None
    denied_by: BucketStatus | None = None


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What a Reconcile changed.

    Attributes:
        settled: False when the reservation was unknown, already settled or expired.
        refunded_tokens: tokens given back to the tokens buckets (negative: charged).
    """

    settled: bool
    refunded_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelBackoff:
    """The adaptive backoff of one upstream model.

    Attributes:
        model: the upstream model.
        factor: between 1 and 8; the model's global rates are divided by it.
        paused_until: wall time until which the model admits nothing, if paused.
    """

    model: str
    factor: float
    paused_until: float | None


@dataclass(frozen=True, slots=True)
class LimiterStatus:
    """Buckets and backoffs for status pages.

    Attributes:
        buckets: the selected buckets.
        backoffs: every model with a factor above 1 or an active pause.
        backend: the counter store's backend name.
    """

    buckets: tuple[BucketStatus, ...]
    backoffs: tuple[ModelBackoff, ...]
    backend: str


@dataclass(frozen=True, slots=True)
class _Bucket:
    """A bucket with the limits in force now."""

    key: BucketKey
    limit_per_minute: int
    effective_per_minute: int
    capacity: int  # scaled units

    def debit(self, units: int) -> BucketDebit:
        return BucketDebit(
            bucket=self.key,
            capacity=self.capacity,
            rate_per_minute=self.effective_per_minute,
            amount=units * SCALE,
        )

    def status(self, level: int) -> BucketStatus:
        return BucketStatus(
            bucket=self.key,
            limit_per_minute=self.limit_per_minute,
            effective_limit_per_minute=self.effective_per_minute,
            capacity=self.capacity // SCALE,
            remaining=max(0, level) // SCALE,
        )

    def seconds_until(self, level: int, units: int) -> float:
        """Seconds until the bucket holds ``units``, at whole milliseconds."""
        missing = units * SCALE - level
        if missing <= 0:
            return 0.0
        # Refill is effective_per_minute scaled units per millisecond.
        return math.ceil(missing / self.effective_per_minute) / 1000


@dataclass(slots=True)
class _Backoff:
    factor: float = 1.0
    paused_until: float = 0.0  # monotonic seconds


@dataclass(frozen=True, slots=True)
class _Reservation:
    estimated_tokens: int
    token_buckets: tuple[_Bucket, ...]
    expires: float  # monotonic seconds


class RateLimiter:
    """Admits requests against the user and global layers; settles reservations.

    Args:
        store: where the bucket levels live.
        limits: the rules.
        clock: the time source; monotonic time for expiry and pauses.
        reservation_ttl_seconds: how long an unreconciled reservation is kept.
    """

    def __init__(
        self,
        store: CounterStore,
        limits: RateLimits,
        clock: Clock,
        *,
        reservation_ttl_seconds: float,
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._reservation_ttl = reservation_ttl_seconds
        # Insertion order is expiry order (one TTL, a monotonic clock), so expired
        # reservations are always at the front and purging them is cheap.
        self._reservations: dict[str, _Reservation] = {}
        self._backoffs: dict[str, _Backoff] = {}

    async def acquire(
        self, caller: Caller, model: str, estimated_tokens: int
    ) -> AcquireResult:
        """Debit one request and ``estimated_tokens`` from every bucket, or none.

        Raises:
            InvalidArgumentError: ``estimated_tokens`` exceeds a tokens bucket's
                capacity, so the request could never be admitted.
            BackendUnavailableError: the counter store could not be reached.
        """
        self._purge_expired_reservations()
        buckets = [*self._user_buckets(caller), *self._model_buckets(model)]
        self._check_fits(buckets, estimated_tokens)
        paused_for = self._paused_for(model)
        if paused_for > 0:
            _log.info(
                "acquire_denied",
                cause="model_paused",
                model=model,
                retry_after_s=paused_for,
            )
            return AcquireResult(
                allowed=False,
                buckets=(),
                retry_after=paused_for,
                denied_by=self._paused_status(model),
            )
        units = [_units(bucket, estimated_tokens) for bucket in buckets]
        outcome = await self._store.debit(
            [bucket.debit(n) for bucket, n in zip(buckets, units, strict=True)],
            enforce=True,
        )
        statuses = tuple(
            bucket.status(level)
            for bucket, level in zip(buckets, outcome.levels, strict=True)
        )
        if not outcome.applied:
            waits = [
                bucket.seconds_until(level, n)
                for bucket, level, n in zip(buckets, outcome.levels, units, strict=True)
            ]
            worst = max(range(len(waits)), key=waits.__getitem__)
            denied_by = statuses[worst]
            _log.info(
                "acquire_denied",
                cause="bucket_short",
                layer=denied_by.bucket.layer.value,
                metric=denied_by.bucket.metric.value,
                retry_after_s=waits[worst],
            )
            return AcquireResult(
                allowed=False,
                buckets=statuses,
                retry_after=waits[worst],
                denied_by=denied_by,
            )
        reservation_id = f"rsv_{secrets.token_hex(16)}"
        self._reservations[reservation_id] = _Reservation(
            estimated_tokens=estimated_tokens,
            token_buckets=tuple(b for b in buckets if b.key.metric is Metric.TOKENS),
            expires=self._clock.monotonic() + self._reservation_ttl,
        )
        return AcquireResult(
            allowed=True,
            buckets=statuses,
            reservation_id=reservation_id,
            reservation_expires_at=self._clock.now() + self._reservation_ttl,
        )

    async def reconcile(
        self, reservation_id: str, actual_tokens: int
    ) -> ReconcileResult:
        """Settle a reservation: refund or charge the difference on its tokens buckets.

        The charge is taken even if it drives a bucket below zero: the tokens were
        spent, so later requests wait for them.

        Raises:
            BackendUnavailableError: the counter store could not be reached.
        """
        self._purge_expired_reservations()
        reservation = self._reservations.pop(reservation_id, None)
        if reservation is None:
            return ReconcileResult(settled=False)
        if not reservation.token_buckets:
            return ReconcileResult(settled=True)
        refund = reservation.estimated_tokens - actual_tokens
        if refund != 0:
            await self._store.debit(
                [bucket.debit(-refund) for bucket in reservation.token_buckets],
                enforce=False,
            )
        return ReconcileResult(settled=True, refunded_tokens=refund)

    async def report_upstream(
        self, model: str, outcome: UpstreamOutcome, retry_after: float | None
    ) -> ModelBackoff:
        """Adapt ``model``'s backoff to an upstream outcome.

        A throttle doubles the factor (up to 8), a success multiplies it by 0.9
        (down to 1). A ``retry_after`` (seconds) pauses the model until it has
        passed; a later, shorter one does not shorten the pause.
        """
        backoff = self._backoffs.setdefault(model, _Backoff())
        if outcome is UpstreamOutcome.THROTTLED:
            backoff.factor = min(_MAX_BACKOFF_FACTOR, backoff.factor * _THROTTLE_GROWTH)
        else:
            backoff.factor = max(1.0, backoff.factor * _SUCCESS_DECAY)
        now = self._clock.monotonic()
        if retry_after is not None:
            backoff.paused_until = max(backoff.paused_until, now + retry_after)
        _log.info(
            "upstream_backoff_changed",
            model=model,
            outcome=outcome.value,
            backoff_factor=backoff.factor,
            paused_for_s=max(0.0, backoff.paused_until - now),
        )
        snapshot = self._snapshot(model, backoff)
        if backoff.factor == 1.0 and backoff.paused_until <= now:
            del self._backoffs[model]
        return snapshot

    async def status(self, caller: Caller | None, model: str) -> LimiterStatus:
        """The buckets of ``caller`` (user layer) and ``model`` (global layer).

        Raises:
            BackendUnavailableError: the counter store could not be reached.
        """
        buckets = [
            *(self._user_buckets(caller) if caller is not None else ()),
            *(self._model_buckets(model) if model else ()),
        ]
        levels: tuple[int, ...] = ()
        if buckets:
            outcome = await self._store.debit(
                [bucket.debit(0) for bucket in buckets], enforce=False
            )
            levels = outcome.levels
        now = self._clock.monotonic()
        backoffs = tuple(
            self._snapshot(name, backoff)
            for name, backoff in sorted(self._backoffs.items())
            if backoff.factor > 1.0 or backoff.paused_until > now
        )
        return LimiterStatus(
            buckets=tuple(
                bucket.status(level)
                for bucket, level in zip(buckets, levels, strict=True)
            ),
            backoffs=backoffs,
            backend=self._store.backend,
        )

    def _user_buckets(self, caller: Caller) -> list[_Bucket]:
        rule = (
            self._limits.tiers.get(caller.user_tier)
            or self._limits.tiers[self._limits.default_tier]
        )
        return self._buckets(Layer.USER, caller.user_key, rule, backoff_factor=1.0)

    def _model_buckets(self, model: str) -> list[_Bucket]:
        rule = self._limits.models.get(model)
        if rule is None:
            return []
        backoff = self._backoffs.get(model)
        factor = backoff.factor if backoff is not None else 1.0
        return self._buckets(Layer.GLOBAL, model, rule, backoff_factor=factor)

    def _buckets(
        self, layer: Layer, key: str, rule: RateRule, *, backoff_factor: float
    ) -> list[_Bucket]:
        rates = ((Metric.REQUESTS, rule.rpm), (Metric.TOKENS, rule.tpm))
        return [
            _Bucket(
                key=BucketKey(layer, key, metric),
                limit_per_minute=rate,
                # At least 1 per minute, so that a bucket always refills.
                effective_per_minute=max(1, math.floor(rate / backoff_factor)),
                capacity=self._capacity(rate),
            )
            for metric, rate in rates
            if rate is not None
        ]

    def _capacity(self, rate_per_minute: int) -> int:
        return round(rate_per_minute * SCALE * self._limits.burst_multiplier)

    def _check_fits(self, buckets: list[_Bucket], estimated_tokens: int) -> None:
        for bucket in buckets:
            if bucket.key.metric is Metric.TOKENS and (
                estimated_tokens * SCALE > bucket.capacity
            ):
                raise InvalidArgumentError(
                    [
                        FieldViolation(
                            "estimated_tokens",
                            f"exceeds the capacity ({bucket.capacity // SCALE}) of "
                            f"the {bucket.key.layer.value} tokens bucket "
                            f"{bucket.key.key!r}, so it could never be admitted",
                        )
                    ]
                )

    def _paused_for(self, model: str) -> float:
        backoff = self._backoffs.get(model)
        if backoff is None:
            return 0.0
        return max(0.0, backoff.paused_until - self._clock.monotonic())

    def _paused_status(self, model: str) -> BucketStatus:
        """The global requests bucket of a paused model: it admits nothing."""
        rule = self._limits.models.get(model)
        rpm = rule.rpm if rule is not None and rule.rpm is not None else 0
        return BucketStatus(
            bucket=BucketKey(Layer.GLOBAL, model, Metric.REQUESTS),
            limit_per_minute=rpm,
            effective_limit_per_minute=0,
            capacity=self._capacity(rpm) // SCALE,
            remaining=0,
        )

    def _snapshot(self, model: str, backoff: _Backoff) -> ModelBackoff:
        paused_for = backoff.paused_until - self._clock.monotonic()
        return ModelBackoff(
            model=model,
            factor=backoff.factor,
            paused_until=self._clock.now() + paused_for if paused_for > 0 else None,
        )

    def _purge_expired_reservations(self) -> None:
        now = self._clock.monotonic()
        while self._reservations:
            reservation_id, reservation = next(iter(self._reservations.items()))
            if reservation.expires > now:
                return
            del self._reservations[reservation_id]


def _units(bucket: _Bucket, estimated_tokens: int) -> int:
    return 1 if bucket.key.metric is Metric.REQUESTS else estimated_tokens
