"""Admission by token buckets per user, service and model, with adaptive backoff.

A request touches up to three layers of buckets, each for requests and/or tokens per
minute: its user's (tier limits or a per-user override), its calling service's (a
share of the model's global quota) and its upstream model's (the account's limits).
The service and global rates are divided by the model's backoff factor. All buckets
are debited in one all-or-nothing store operation: one request from each requests
bucket and the estimated tokens from each tokens bucket. Capacity is the rate times
the burst multiplier; buckets refill continuously at rate / 60 per second. Bucket
arithmetic is integer, in the scaled units of :mod:`services.ratelimit.ports`.

An admitted request holds a reservation, kept by the store so that any replica can
settle it, until Reconcile settles its tokens buckets with the tokens actually used
or until it expires and stands as estimated.

When the shared store is unreachable the limiter either fails closed (the error
propagates: UNAVAILABLE) or, with a :class:`LocalFallback`, fails open to a
conservative in-process limiter in which every limit is divided by the configured
replica count; the shared store is probed again after a retry interval, and answers
made locally say ``degraded``.
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from services.core.clock import Clock
from services.core.errors import (
    BackendUnavailableError,
    FieldViolation,
    InvalidArgumentError,
)
from services.ratelimit.limits import EnvoyMapping, RateLimits, RateRule
from services.ratelimit.ports import (
    FACTOR_SCALE,
    SCALE,
    BackoffChange,
    BackoffState,
    BucketDebit,
    BucketKey,
    CounterStore,
    DebitOutcome,
    Layer,
    Metric,
    NewReservation,
)

_log = structlog.get_logger("tollgate.ratelimit")

_T = TypeVar("_T")

# Adaptive backoff of seed section 2: x2 per upstream 429 (up to x8, the store's
# MAX_FACTOR), x0.9 per success (down to 1).
_THROTTLE_CHANGE = BackoffChange(numerator=2, denominator=1)
_SUCCESS_CHANGE = BackoffChange(numerator=9, denominator=10)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request is for.

    Attributes:
        tenant_id: the organisation that owns the API key; required.
        service: the calling application or feature; selects the service layer.
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
        limit_per_minute: the configured rate (divided by the replica count while
            degraded).
        effective_limit_per_minute: the rate in force (divided by the backoff factor
            on the service and global layers; 0 while the model is paused).
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
        degraded: the conservative local limiter decided (shared store unreachable).
    """

    allowed: bool
    buckets: tuple[BucketStatus, ...]
    reservation_id: str = ""
    reservation_expires_at: float | None = None
    retry_after: float | None = None
    denied_by: BucketStatus | None = None
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What a Reconcile changed.

    Attributes:
        settled: False when the reservation was unknown, already settled or expired.
        refunded_tokens: tokens given back to the tokens buckets (negative: charged).
        degraded: the shared store was unreachable (its reservations are unknown
            until it is back).
    """

    settled: bool
    refunded_tokens: int = 0
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class ModelBackoff:
    """The adaptive backoff of one upstream model.

    Attributes:
        model: the upstream model.
        factor: between 1 and 8; the model's service and global rates are divided
            by it.
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
        degraded: the shared store is unreachable and the local limiter decides.
    """

    buckets: tuple[BucketStatus, ...]
    backoffs: tuple[ModelBackoff, ...]
    backend: str
    degraded: bool


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One Envoy rate-limit descriptor, decoded into the limiter's terms.

    The layers it selects are those whose fields are present: ``user_id`` the user
    layer, ``service`` with ``model`` the service layer, ``model`` the global layer.

    Attributes:
        tenant_id: the user's tenant.
        user_id: the end user; empty: no user layer.
        user_tier: the end user's tier.
        service: the calling service; empty: no service layer.
        model: the upstream model; empty: no service or global layer.
        tokens: whether ``hits`` counts tokens (tokens buckets) or requests
            (requests buckets).
        hits: how many units to take.
    """

    tenant_id: str
    user_id: str
    user_tier: str
    service: str
    model: str
    tokens: bool
    hits: int


def decode_descriptor(
    mapping: EnvoyMapping,
    entries: Sequence[tuple[str, str]],
    hits: int,
    *,
    path: str,
) -> Descriptor:
    """Map one Envoy descriptor's entries onto a :class:`Descriptor`.

    Entries whose key the mapping does not name are ignored, as Envoy's reference
    service ignores descriptors it has no rule for.

    Raises:
        InvalidArgumentError: the ``metric`` entry is neither requests nor tokens
            (the violation names ``path``).
    """
    fields: dict[str, str] = {}
    for key, value in entries:
        field = mapping.entries.get(key)
        if field is not None:
            fields[field] = value
    metric = fields.get("metric", "requests")
    if metric not in ("requests", "tokens"):
        raise InvalidArgumentError(
            [FieldViolation(path, "the metric entry must be requests or tokens")]
        )
    return Descriptor(
        tenant_id=fields.get("tenant") or mapping.default_tenant,
        user_id=fields.get("user", ""),
        user_tier=fields.get("tier", ""),
        service=fields.get("service", ""),
        model=fields.get("model", ""),
        tokens=metric == "tokens",
        hits=hits,
    )


@dataclass(frozen=True, slots=True)
class DescriptorDecision:
    """The status of one descriptor.

    Attributes:
        over_limit: one of its buckets could not take its hits, or its model is
            paused.
        limit: its tightest bucket (least remaining); None when no rule applies.
        duration_until_reset: when over the limit, seconds until its buckets can
            take the hits; otherwise seconds until the tightest bucket is full.
    """

    over_limit: bool
    limit: BucketStatus | None
    duration_until_reset: float


@dataclass(frozen=True, slots=True)
class DescriptorsResult:
    """The decision on one Envoy request: every descriptor's buckets or none.

    Attributes:
        allowed: every bucket of every descriptor was debited.
        decisions: one per descriptor, in request order.
        degraded: the conservative local limiter decided.
    """

    allowed: bool
    decisions: tuple[DescriptorDecision, ...]
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class LocalFallback:
    """Fail-open: where to decide while the shared store is unreachable.

    Attributes:
        store: an in-process store.
        replicas: the configured replica count; every limit is divided by it, so
            the replicas together admit no more than the limit.
        retry_interval_seconds: how long to decide locally before probing the
            shared store again.
    """

    store: CounterStore
    replicas: int
    retry_interval_seconds: float


@dataclass(frozen=True, slots=True)
class _Bucket:
    """A bucket with its configured limits (divided by the replica count locally)."""

    key: BucketKey
    limit_per_minute: int
    capacity: int  # scaled units
    backoff_model: str

    def debit(self, units: int) -> BucketDebit:
        return BucketDebit(
            bucket=self.key,
            capacity=self.capacity,
            rate_per_minute=self.limit_per_minute,
            amount=units * SCALE,
            backoff_model=self.backoff_model,
        )

    def divided(self, replicas: int) -> _Bucket:
        if replicas == 1:
            return self
        return replace(
            self,
            limit_per_minute=max(1, self.limit_per_minute // replicas),
            capacity=self.capacity // replicas,
        )

    def status(self, level: int, rate: int) -> BucketStatus:
        return BucketStatus(
            bucket=self.key,
            limit_per_minute=self.limit_per_minute,
            effective_limit_per_minute=rate,
            capacity=self.capacity // SCALE,
            remaining=max(0, level) // SCALE,
        )


def _seconds_until(level: int, rate: int, target: int) -> float:
    """Seconds until a bucket at ``level`` refilling at ``rate`` holds ``target``.

    In whole milliseconds: the rate per minute is the refill in scaled units per ms.
    """
    missing = target - level
    if missing <= 0:
        return 0.0
    return math.ceil(missing / rate) / 1000


class RateLimiter:
    """Admits requests against the user, service and global layers.

    Args:
        store: where bucket levels, reservations and backoffs live.
        limits: the rules; :meth:`replace_limits` swaps them at run time.
        clock: the time source for wall-clock timestamps and the probe interval.
        reservation_ttl_seconds: how long an unreconciled reservation is kept.
        fallback: fail-open to this local limiter when ``store`` is unreachable;
            None fails closed.
    """

    def __init__(
        self,
        store: CounterStore,
        limits: RateLimits,
        clock: Clock,
        *,
        reservation_ttl_seconds: float,
        fallback: LocalFallback | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._reservation_ttl_ms = math.ceil(reservation_ttl_seconds * 1000)
        self._fallback = fallback
        self._degraded = False
        self._probe_at = 0.0  # monotonic seconds

    @property
    def limits(self) -> RateLimits:
        """The rules in force."""
        return self._limits

    @property
    def degraded(self) -> bool:
        """Whether the local fallback decides because the shared store is down."""
        return self._degraded

    def replace_limits(self, limits: RateLimits) -> None:
        """Apply new rules from the next decision on; bucket levels carry over."""
        self._limits = limits

    async def acquire(
        self, caller: Caller, model: str, estimated_tokens: int
    ) -> AcquireResult:
        """Debit one request and ``estimated_tokens`` from every bucket, or none.

        Raises:
            InvalidArgumentError: ``estimated_tokens`` exceeds a tokens bucket's
                capacity, so the request could never be admitted.
            BackendUnavailableError: the counter store could not be reached and the
                limiter fails closed.
        """
        limits = self._limits
        buckets = [
            *self._user_buckets(limits, caller),
            *self._service_buckets(limits, caller.service, model),
            *self._model_buckets(limits, model),
        ]
        _check_fits(buckets, estimated_tokens)
        reservation = NewReservation(
            reservation_id=f"rsv_{secrets.token_hex(16)}",
            estimated_tokens=estimated_tokens,
            ttl_ms=self._reservation_ttl_ms,
        )
        units = [_units(bucket.key.metric, estimated_tokens) for bucket in buckets]

        async def attempt(
            store: CounterStore, replicas: int
        ) -> tuple[list[_Bucket], DebitOutcome]:
            local = [bucket.divided(replicas) for bucket in buckets]
            outcome = await store.acquire(
                [b.debit(n) for b, n in zip(local, units, strict=True)],
                models=(model,),
                reservation=reservation,
            )
            return local, outcome

        (local, outcome), degraded = await self._decide(attempt)
        if outcome.paused_ms > 0:
            retry_after = outcome.paused_ms / 1000
            _log.info(
                "acquire_denied",
                cause="model_paused",
                model=model,
                retry_after_s=retry_after,
            )
            return AcquireResult(
                allowed=False,
                buckets=(),
                retry_after=retry_after,
                denied_by=self._paused_status(limits, model),
                degraded=degraded,
            )
        statuses = tuple(
            bucket.status(level, rate)
            for bucket, level, rate in zip(
                local, outcome.levels, outcome.rates, strict=True
            )
        )
        if not outcome.applied:
            waits = [
                _seconds_until(level, rate, n * SCALE)
                for level, rate, n in zip(
                    outcome.levels, outcome.rates, units, strict=True
                )
            ]
            worst = max(range(len(waits)), key=waits.__getitem__)
            denied_by = statuses[worst]
            _log.info(
                "acquire_denied",
                cause="bucket_short",
                layer=denied_by.bucket.layer.value,
                metric=denied_by.bucket.metric.value,
                retry_after_s=waits[worst],
                degraded=degraded,
            )
            return AcquireResult(
                allowed=False,
                buckets=statuses,
                retry_after=waits[worst],
                denied_by=denied_by,
                degraded=degraded,
            )
        return AcquireResult(
            allowed=True,
            buckets=statuses,
            reservation_id=reservation.reservation_id,
            reservation_expires_at=self._clock.now() + self._reservation_ttl_ms / 1000,
            degraded=degraded,
        )

    async def reconcile(
        self, reservation_id: str, actual_tokens: int
    ) -> ReconcileResult:
        """Settle a reservation: refund or charge the difference on its tokens buckets.

        Raises:
            BackendUnavailableError: the counter store could not be reached and the
                limiter fails closed.
        """
        if self._fallback is not None:
            # A reservation made while degraded lives in the local store.
            local = await self._fallback.store.settle(reservation_id, actual_tokens)
            if local.found:
                return ReconcileResult(
                    settled=True, refunded_tokens=local.refunded_tokens, degraded=True
                )

        async def attempt(store: CounterStore, replicas: int) -> ReconcileResult:
            outcome = await store.settle(reservation_id, actual_tokens)
            return ReconcileResult(
                settled=outcome.found, refunded_tokens=outcome.refunded_tokens
            )

        result, degraded = await self._decide(attempt)
        return replace(result, degraded=degraded)

    async def report_upstream(
        self, model: str, outcome: UpstreamOutcome, retry_after: float | None
    ) -> ModelBackoff:
        """Adapt ``model``'s backoff to an upstream outcome.

        A throttle doubles the factor (up to 8), a success multiplies it by 0.9
        (down to 1). A ``retry_after`` (seconds) pauses the model until it has
        passed; a later, shorter one does not shorten the pause.

        Raises:
            BackendUnavailableError: the counter store could not be reached and the
                limiter fails closed.
        """
        change = (
            _THROTTLE_CHANGE
            if outcome is UpstreamOutcome.THROTTLED
            else _SUCCESS_CHANGE
        )
        pause_ms = math.ceil(retry_after * 1000) if retry_after else 0

        async def attempt(store: CounterStore, replicas: int) -> BackoffState:
            return await store.report_upstream(model, change, pause_ms)

        state, _ = await self._decide(attempt)
        backoff = self._backoff(state)
        _log.info(
            "upstream_backoff_changed",
            model=model,
            outcome=outcome.value,
            backoff_factor=backoff.factor,
            paused_for_s=state.paused_ms / 1000,
        )
        return backoff

    async def status(self, caller: Caller | None, model: str) -> LimiterStatus:
        """The buckets of ``caller`` (user and service layers) and ``model`` (global).

        Raises:
            BackendUnavailableError: the counter store could not be reached and the
                limiter fails closed.
        """
        limits = self._limits
        buckets = [
            *(self._user_buckets(limits, caller) if caller is not None else ()),
            *(
                self._service_buckets(limits, caller.service, model)
                if caller is not None
                else ()
            ),
            *(self._model_buckets(limits, model) if model else ()),
        ]

        async def attempt(
            store: CounterStore, replicas: int
        ) -> tuple[list[BucketStatus], list[BackoffState]]:
            local = [bucket.divided(replicas) for bucket in buckets]
            outcome = await store.read([bucket.debit(0) for bucket in local])
            statuses = [
                bucket.status(level, rate)
                for bucket, level, rate in zip(
                    local, outcome.levels, outcome.rates, strict=True
                )
            ]
            return statuses, await store.backoffs()

        (statuses, backoffs), degraded = await self._decide(attempt)
        return LimiterStatus(
            buckets=tuple(statuses),
            backoffs=tuple(self._backoff(state) for state in backoffs),
            backend=self._store.backend,
            degraded=degraded,
        )

    async def should_rate_limit(
        self, domain: str, descriptors: Sequence[Descriptor]
    ) -> DescriptorsResult:
        """Decide an Envoy request: the buckets of all descriptors, all-or-nothing.

        A bucket named by several descriptors takes the sum of their hits. A domain
        this service is not configured for gets OK with no limits.

        Raises:
            BackendUnavailableError: the counter store could not be reached and the
                limiter fails closed.
        """
        limits = self._limits
        if limits.envoy.domains and domain not in limits.envoy.domains:
            return DescriptorsResult(
                allowed=True,
                decisions=tuple(
                    DescriptorDecision(False, None, 0.0) for _ in descriptors
                ),
            )
        per_descriptor = [self._descriptor_buckets(limits, d) for d in descriptors]
        merged: dict[BucketKey, tuple[_Bucket, int]] = {}
        for descriptor, buckets in zip(descriptors, per_descriptor, strict=True):
            for bucket in buckets:
                _, hits = merged.get(bucket.key, (bucket, 0))
                merged[bucket.key] = (bucket, hits + descriptor.hits)
        models = sorted({d.model for d in descriptors if d.model})
        ordered = list(merged.values())

        async def attempt(
            store: CounterStore, replicas: int
        ) -> tuple[list[_Bucket], DebitOutcome]:
            local = [bucket.divided(replicas) for bucket, _ in ordered]
            outcome = await store.acquire(
                [b.debit(h) for b, (_, h) in zip(local, ordered, strict=True)],
                models=models,
                reservation=None,
            )
            return local, outcome

        (local, outcome), degraded = await self._decide(attempt)
        state = {
            bucket.key: (bucket, level, rate, hits)
            for bucket, level, rate, (_, hits) in zip(
                local, outcome.levels, outcome.rates, ordered, strict=True
            )
        }
        decisions = []
        for descriptor, buckets in zip(descriptors, per_descriptor, strict=True):
            if outcome.paused_ms > 0 and descriptor.model:
                decisions.append(
                    DescriptorDecision(
                        over_limit=True,
                        limit=self._paused_status(limits, descriptor.model),
                        duration_until_reset=outcome.paused_ms / 1000,
                    )
                )
                continue
            decisions.append(
                _descriptor_decision(
                    [state[bucket.key] for bucket in buckets], outcome.applied
                )
            )
        allowed = outcome.applied and outcome.paused_ms == 0
        if not allowed:
            _log.info("envoy_over_limit", domain=domain, degraded=degraded)
        return DescriptorsResult(
            allowed=allowed, decisions=tuple(decisions), degraded=degraded
        )

    async def check_backend(self) -> bool:
        """Health check: probe the shared store and follow it into or out of degraded.

        Returns whether the limiter can answer: failing open it always can (locally
        while the store is down); failing closed only while the store answers.
        """
        reachable = await self._store.ping()
        if self._fallback is None:
            return reachable
        if reachable:
            self._mark_recovered()
        else:
            self._mark_degraded("ping failed", self._fallback)
        return True

    def _mark_degraded(self, error: str, fallback: LocalFallback) -> None:
        if not self._degraded:
            _log.error(
                "ratelimit_degraded",
                backend=self._store.backend,
                error=error,
                replicas=fallback.replicas,
            )
        self._degraded = True
        self._probe_at = self._clock.monotonic() + fallback.retry_interval_seconds

    def _mark_recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            _log.info("ratelimit_recovered", backend=self._store.backend)

    async def _decide(
        self, attempt: Callable[[CounterStore, int], Awaitable[_T]]
    ) -> tuple[_T, bool]:
        """Run ``attempt`` on the shared store, or locally while it is unreachable.

        Returns the result and whether it was decided locally.
        """
        fallback = self._fallback
        if fallback is None:
            return await attempt(self._store, 1), False
        if self._degraded and self._clock.monotonic() < self._probe_at:
            return await attempt(fallback.store, fallback.replicas), True
        try:
            result = await attempt(self._store, 1)
        except BackendUnavailableError as error:
            self._mark_degraded(error.message, fallback)
            return await attempt(fallback.store, fallback.replicas), True
        self._mark_recovered()
        return result, False

    def _backoff(self, state: BackoffState) -> ModelBackoff:
        return ModelBackoff(
            model=state.model,
            factor=state.factor / FACTOR_SCALE,
            paused_until=(
                self._clock.now() + state.paused_ms / 1000
                if state.paused_ms > 0
                else None
            ),
        )

    def _user_buckets(self, limits: RateLimits, caller: Caller) -> list[_Bucket]:
        rule = limits.user_rule(caller.tenant_id, caller.user_id, caller.user_tier)
        return _buckets(limits, Layer.USER, caller.user_key, rule, backoff_model="")

    def _service_buckets(
        self, limits: RateLimits, service: str, model: str
    ) -> list[_Bucket]:
        rule = limits.service_rule(service, model)
        if rule is None:
            return []
        return _buckets(
            limits, Layer.SERVICE, f"{service}:{model}", rule, backoff_model=model
        )

    def _model_buckets(self, limits: RateLimits, model: str) -> list[_Bucket]:
        rule = limits.models.get(model)
        if rule is None:
            return []
        return _buckets(limits, Layer.GLOBAL, model, rule, backoff_model=model)

    def _descriptor_buckets(
        self, limits: RateLimits, descriptor: Descriptor
    ) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        if descriptor.user_id:
            caller = Caller(
                tenant_id=descriptor.tenant_id,
                user_id=descriptor.user_id,
                user_tier=descriptor.user_tier,
            )
            buckets += self._user_buckets(limits, caller)
        if descriptor.service and descriptor.model:
            buckets += self._service_buckets(
                limits, descriptor.service, descriptor.model
            )
        if descriptor.model:
            buckets += self._model_buckets(limits, descriptor.model)
        metric = Metric.TOKENS if descriptor.tokens else Metric.REQUESTS
        return [bucket for bucket in buckets if bucket.key.metric is metric]

    def _paused_status(self, limits: RateLimits, model: str) -> BucketStatus:
        """The global requests bucket of a paused model: it admits nothing."""
        rule = limits.models.get(model)
        rpm = rule.rpm if rule is not None and rule.rpm is not None else 0
        return BucketStatus(
            bucket=BucketKey(Layer.GLOBAL, model, Metric.REQUESTS),
            limit_per_minute=rpm,
            effective_limit_per_minute=0,
            capacity=_capacity(limits, rpm) // SCALE,
            remaining=0,
        )


def _buckets(
    limits: RateLimits,
    layer: Layer,
    key: str,
    rule: RateRule,
    *,
    backoff_model: str,
) -> list[_Bucket]:
    rates = ((Metric.REQUESTS, rule.rpm), (Metric.TOKENS, rule.tpm))
    return [
        _Bucket(
            key=BucketKey(layer, key, metric),
            limit_per_minute=rate,
            capacity=_capacity(limits, rate),
            backoff_model=backoff_model,
        )
        for metric, rate in rates
        if rate is not None
    ]


def _capacity(limits: RateLimits, rate_per_minute: int) -> int:
    return round(rate_per_minute * SCALE * limits.burst_multiplier)


def _units(metric: Metric, estimated_tokens: int) -> int:
    return 1 if metric is Metric.REQUESTS else estimated_tokens


def _check_fits(buckets: list[_Bucket], estimated_tokens: int) -> None:
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


def _descriptor_decision(
    buckets: list[tuple[_Bucket, int, int, int]], applied: bool
) -> DescriptorDecision:
    """One descriptor's status from its buckets' (bucket, level, rate, hits)."""
    if not buckets:
        return DescriptorDecision(over_limit=False, limit=None, duration_until_reset=0)
    short = [] if applied else [b for b in buckets if b[1] < b[3] * SCALE]
    if short:
        waits = [
            _seconds_until(level, rate, hits * SCALE) for _, level, rate, hits in short
        ]
        worst = max(range(len(short)), key=waits.__getitem__)
        bucket, level, rate, _ = short[worst]
        return DescriptorDecision(
            over_limit=True,
            limit=bucket.status(level, rate),
            duration_until_reset=waits[worst],
        )
    bucket, level, rate, _ = min(buckets, key=lambda b: b[1])
    return DescriptorDecision(
        over_limit=False,
        limit=bucket.status(level, rate),
        duration_until_reset=_seconds_until(level, rate, bucket.capacity),
    )
