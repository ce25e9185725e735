"""Fault injection: which fault, if any, the next API request suffers.

A fault comes, in order of precedence, from the request itself (the
``x-sim-fault`` header, then ``metadata.sim_fault`` in the JSON body), from the
schedule filled through ``POST /_sim/faults``, or from the configured
``fault_rate``/``fault_kind`` draw.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from services.simulator.errors import ApiError


class FaultKind(StrEnum):
    """The faults the simulator can inject."""

    RATE_LIMIT = "rate_limit"
    """HTTP 429 with a ``Retry-After`` header."""
    SERVER_ERROR = "server_error"
    """HTTP 500."""
    UNAVAILABLE = "unavailable"
    """HTTP 503."""
    HANG = "hang"
    """Wait ``hang_seconds`` before answering normally."""
    BROKEN_STREAM = "broken_stream"
    """Streams: a few deltas, then the connection is cut. Otherwise a 500."""


class UnknownFaultError(ValueError):
    """A fault name that is not a :class:`FaultKind`."""


def parse_fault_kind(name: str) -> FaultKind:
    """Return the :class:`FaultKind` called ``name``.

    Raises:
        UnknownFaultError: ``name`` is not a fault kind.
    """
    try:
        return FaultKind(name.strip().lower())
    except ValueError:
        allowed = ", ".join(kind.value for kind in FaultKind)
        raise UnknownFaultError(
            f"unknown fault kind {name!r}; expected one of {allowed}"
        ) from None


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault chosen for one request."""

    kind: FaultKind
    retry_after_seconds: int


@dataclass(frozen=True, slots=True)
class _Scheduled:
    kind: FaultKind
    retry_after_seconds: int | None
    model: str | None
    """Only a request for this model suffers it; None: any request."""


class FaultPlan:
    """Decides the fault of each API request; all state lives here."""

    def __init__(
        self,
        *,
        rate: float,
        kind: FaultKind,
        retry_after_seconds: int,
        seed: int,
    ) -> None:
        """Create a plan drawing ``kind`` with probability ``rate``."""
        self._rate = rate
        self._kind = kind
        self._retry_after_seconds = retry_after_seconds
        self._seed = seed
        self._rng = random.Random(seed)
        self._scheduled: deque[_Scheduled] = deque()

    @property
    def pending(self) -> int:
        """Number of scheduled faults not yet consumed."""
        return len(self._scheduled)

    def schedule(
        self,
        kind: FaultKind,
        count: int,
        retry_after_seconds: int | None = None,
        model: str | None = None,
    ) -> None:
        """Make the next ``count`` API requests (after any already scheduled) fail.

        With ``model``, only requests for that model consume these faults, so a test
        can fail one model of a fallback ladder and let the next one answer.
        """
        for _ in range(count):
            self._scheduled.append(_Scheduled(kind, retry_after_seconds, model))

    def clear(self) -> None:
        """Drop every scheduled fault."""
        self._scheduled.clear()

    def reset(self) -> None:
        """Drop scheduled faults and restart the random draw from the seed."""
        self.clear()
        self._rng = random.Random(self._seed)

    def pick(
        self, requested: FaultKind | None, model: str | None = None
    ) -> Fault | None:
        """Return the fault for one API request, consuming a scheduled one if used.

        Args:
            requested: a fault the request asked for itself, which wins.
            model: the model the request names, if any.
        """
        if requested is not None:
            return Fault(requested, self._retry_after_seconds)
        scheduled = next(
            (s for s in self._scheduled if s.model is None or s.model == model), None
        )
        if scheduled is not None:
            self._scheduled.remove(scheduled)
            retry_after = scheduled.retry_after_seconds
            return Fault(
                scheduled.kind,
                self._retry_after_seconds if retry_after is None else retry_after,
            )
        # Draw only when a rate is set, so that enabling faults later does not
        # shift the sequence of earlier draws.
        if self._rate > 0 and self._rng.random() < self._rate:
            return Fault(self._kind, self._retry_after_seconds)
        return None


def fault_error(fault: Fault) -> ApiError:
    """The error answer of an API request that suffers ``fault``.

    A hang or a broken stream has no error answer of its own; where one is needed
    (a request that does not stream, a batch line) it is a 500.
    """
    if fault.kind is FaultKind.RATE_LIMIT:
        seconds = fault.retry_after_seconds
        return ApiError(
            429,
            "Rate limit reached for requests (simulated). "
            f"Please try again in {seconds}s.",
            type_="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )
    if fault.kind is FaultKind.UNAVAILABLE:
        return ApiError(
            503,
            "The engine is currently overloaded, please try again later.",
            type_="server_error",
        )
    return ApiError(
        500,
        "The server had an error while processing your request. Sorry about that!",
        type_="server_error",
    )
