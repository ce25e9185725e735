"""The simulator's mutable state: counters, the fault plan and shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from services.core.clock import Clock, SystemClock
from services.simulator.config import SimulatorSettings
from services.simulator.faults import FaultPlan
from services.simulator.prompt_cache import PromptCache


@dataclass
class Stats:
    """Counters served by ``GET /_sim/stats``.

    ``requests`` counts every authenticated ``/v1`` request, including those
    answered with an injected fault or a 400.
    """

    requests: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    streams: int = 0
    unauthorized: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def snapshot(self) -> dict[str, object]:
        """Return the counters as a JSON-ready mapping."""
        return {
            "requests": self.requests,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "faults": dict(sorted(self.faults.items())),
            "streams": self.streams,
            "unauthorized": self.unauthorized,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of ``/v1/files``, held in memory."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_json(self) -> dict[str, object]:
        """The OpenAI ``file`` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One valid line of a batch input file."""

    custom_id: str
    body: dict[str, object]


@dataclass
class SimBatch:
    """One batch of ``/v1/batches``; its status follows from the clock."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float
    lines: list[BatchLine]
    model: str | None
    errors: list[dict[str, object]]
    """Why the batch fails as a whole (validation errors, a requested failure)."""
    outcome: str = "completed"
    """How it ends if nobody cancels it: ``completed``, ``failed`` or ``expired``."""
    cancelling_at: float | None = None
    finished: bool = False
    """Whether the output and error files were written (once, at the end)."""
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    usage: dict[str, object] | None = None


class SimulatorState:
    """Everything the handlers share, stored on the aiohttp application."""

    def __init__(self, settings: SimulatorSettings, clock: Clock | None = None) -> None:
        """Create fresh counters and a fault plan from ``settings``.

        Args:
            settings: the configuration.
            clock: what batch progress is measured with; the real clock by default.
        """
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, SimBatch] = {}
        self.stats = Stats()
        self.prompt_cache = PromptCache(self.clock)
        self.faults = FaultPlan(
            rate=settings.fault_rate,
            kind=settings.fault_kind,
            retry_after_seconds=settings.retry_after_seconds,
            seed=settings.seed,
        )
        self._closing = asyncio.Event()

    def reset(self) -> None:
        """Zero the counters, drop scheduled faults and re-seed the fault draw."""
        self.stats = Stats()
        self.faults.reset()

    def close(self) -> None:
        """Wake every hanging request so that shutdown does not wait for them."""
        self._closing.set()

    async def sleep_ms(self, milliseconds: float) -> None:
        """Sleep ``milliseconds``, returning early once the simulator is closing."""
        if milliseconds <= 0 or self._closing.is_set():
            return
        try:
            await asyncio.wait_for(self._closing.wait(), milliseconds / 1000)
        except TimeoutError:
            return
