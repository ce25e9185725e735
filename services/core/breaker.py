"""Client-side circuit breaker (closed, open, half-open), seed section 1.

It opens after ``failure_threshold`` consecutive failures, refuses calls for
``recovery_timeout_seconds``, then lets ``half_open_max_calls`` probes through;
``success_threshold`` probe successes close it and any probe failure reopens it.
All state changes happen on the event loop thread, so no lock is needed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import structlog
from pydantic import BaseModel, ConfigDict, Field

from services.core.clock import Clock

_log = structlog.get_logger("tollgate.breaker")


class BreakerState(enum.Enum):
    """The three states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(BaseModel):
    """Thresholds; the defaults are the seed's."""

    model_config = ConfigDict(frozen=True)

    failure_threshold: int = Field(default=5, ge=1, description="Failures to open.")
    recovery_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Open time before probing."
    )
    half_open_max_calls: int = Field(
        default=3, ge=1, description="Probe calls allowed while half-open."
    )
    success_threshold: int = Field(
        default=2, ge=1, description="Probe successes to close."
    )


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state for status pages."""

    name: str
    state: BreakerState
    failure_count: int
    opened_at: float | None


class CircuitBreaker:
    """One breaker guarding one dependency."""

    def __init__(self, name: str, config: BreakerConfig, clock: Clock) -> None:
        self.name = name
        self._config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_calls = 0
        self._probe_successes = 0
        self._opened_mono = 0.0
        self._half_open_mono = 0.0
        self._opened_wall: float | None = None

    @property
    def state(self) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN once the timeout passed."""
        if (
            self._state is BreakerState.OPEN
            and self._clock.monotonic() - self._opened_mono
            >= self._config.recovery_timeout_seconds
        ):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 if not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        elapsed = self._clock.monotonic() - self._opened_mono
        return max(0.0, self._config.recovery_timeout_seconds - elapsed)

    def allow(self) -> bool:
        """Whether a call may go through now; counts half-open probes."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if (
            self._probe_calls >= self._config.half_open_max_calls
            and self._clock.monotonic() - self._half_open_mono
            >= self._config.recovery_timeout_seconds
        ):
            # Probes that never reported back (cancelled calls) must not wedge the
            # breaker: after another recovery timeout, start a fresh round of probes.
            self._transition(BreakerState.HALF_OPEN)
        if self._probe_calls < self._config.half_open_max_calls:
            self._probe_calls += 1
            return True
        return False

    def release(self) -> None:
        """A call allowed through ended without telling anything about health.

        (It was cancelled, or never reached the dependency.) A half-open probe slot
        is given back so the next call can probe instead.
        """
        if self._state is BreakerState.HALF_OPEN and self._probe_calls > 0:
            self._probe_calls -= 1

    def record_success(self) -> None:
        """A call succeeded."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self._config.success_threshold:
                self._transition(BreakerState.CLOSED)
        else:
            self._failures = 0

    def record_failure(self) -> None:
        """A call failed in a way that says the dependency is unhealthy."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED
            and self._failures >= self._config.failure_threshold
        ):
            self._transition(BreakerState.OPEN)

    def snapshot(self) -> BreakerSnapshot:
        """The state for status pages."""
        return BreakerSnapshot(
            name=self.name,
            state=self.state,
            failure_count=self._failures,
            opened_at=self._opened_wall,
        )

    def _transition(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        if state is BreakerState.OPEN:
            self._opened_mono = self._clock.monotonic()
            self._opened_wall = self._clock.now()
        elif state is BreakerState.HALF_OPEN:
            self._half_open_mono = self._clock.monotonic()
            self._probe_calls = 0
            self._probe_successes = 0
        else:
            self._failures = 0
        _log.info(
            "breaker_state_changed",
            breaker=self.name,
            previous=previous.value,
            state=state.value,
        )
