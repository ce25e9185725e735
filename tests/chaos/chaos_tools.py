"""Tools of the chaos tests: kill -9 and respawn a suite child, steady load, probes.

A child is respawned with the command line and the environment it was started
with, read from /proc before the kill, so that it comes back exactly as
``services/devsuite.py`` started it: same port, same files, same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tollgate.costs.v1 import costs_pb2 as costs_pb
from tollgate.costs.v1 import costs_pb2_grpc
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import Suite, SuiteProcess, service_ready

# Reconnect quickly after the gateway comes back, like the gateway's own clients.
CLIENT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
# The statuses a caller may see on a bad day; UNKNOWN or INTERNAL never.
PROPER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


@dataclass(frozen=True)
class Corpse:
    """What a killed child was started with, to start it again."""

    name: str
    port: int
    args: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path


def kill9(suite: Suite, name: str) -> Corpse:
    """SIGKILL one child of the suite; return what it takes to respawn it."""
    child = suite.processes[name]
    pid = child.process.pid
    raw_env = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(
        entry.split("=", 1) for entry in raw_env.decode().split("\0") if "=" in entry
    )
    corpse = Corpse(
        name=name,
        port=child.port,
        args=[str(arg) for arg in child.process.args],  # type: ignore[union-attr]
        env=env,
        cwd=str(Path(f"/proc/{pid}/cwd").resolve()),
        log_path=child.log_path,
    )
    suite.stop_service(name, signal.SIGKILL)
    return corpse


def respawn(suite: Suite, corpse: Corpse, timeout: float = 60.0) -> None:
    """Start a killed child again and wait until it answers its health check."""
    with corpse.log_path.open("ab") as log:
        process = subprocess.Popen(
            corpse.args,
            env=corpse.env,
            cwd=corpse.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    suite.processes[corpse.name] = SuiteProcess(
        corpse.name, corpse.port, process, corpse.log_path
    )
    deadline = time.monotonic() + timeout
    while not service_ready(corpse.port, timeout=0.5):
        if process.poll() is not None:
            raise RuntimeError(
                f"{corpse.name} exited with {process.returncode}:\n"
                f"{corpse.log_path.read_text()[-2000:]}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{corpse.name} did not come back")
        time.sleep(0.1)


@dataclass(frozen=True)
class Outcome:
    """One request of the load: when it went, how long it took, how it ended."""

    sent_at: float
    elapsed: float
    deadline: float
    code: grpc.StatusCode
    reply: gateway_pb.CreateResponseResponse | None


@dataclass
class Load:
    """A bounded open-loop load of CreateResponse calls at a fixed rate.

    Every request is unique (no cache hits, no shared upstream calls), spread over
    ``users`` end users so that no per-user limit decides the outcome, and carries
    ``deadline`` seconds.
    """

    address: str
    api_key: str
    rate_per_second: float = 25.0
    deadline: float = 2.0
    users: int = 50
    max_in_flight: int = 100
    label: str = "load"
    outcomes: list[Outcome] = field(default_factory=list)
    # The longest the event loop was late to wake up: time the load generator
    # itself lost, which shows in every elapsed time measured meanwhile.
    max_loop_lag: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _lag_task: asyncio.Task[None] = field(init=False)

    async def __aenter__(self) -> Load:
        self._task = asyncio.create_task(self._run())
        self._lag_task = asyncio.create_task(self._watch_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task
        self._lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._lag_task

    async def _watch_loop(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lag = time.monotonic() - before - 0.02
            self.max_loop_lag = max(self.max_loop_lag, lag)

    async def _run(self) -> None:
        counter = itertools.count()
        slots = asyncio.Semaphore(self.max_in_flight)
        pending: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate_per_second
        async with grpc.aio.insecure_channel(
            self.address, options=CLIENT_OPTIONS
        ) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            next_at = time.monotonic()
            while not self._stop.is_set():
                n = next(counter)
                await slots.acquire()
                task = asyncio.create_task(self._one(stub, n, slots))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            if pending:
                await asyncio.gather(*pending)

    async def _one(
        self,
        stub: gateway_pb2_grpc.GatewayServiceStub,
        n: int,
        slots: asyncio.Semaphore,
    ) -> None:
        request = gateway_pb.CreateResponseRequest(
            input=f"{self.label} question {n}: what is a circuit breaker?",
            user_id=f"chaos-user-{n % self.users}",
            max_output_tokens=32,
        )
        sent = time.monotonic()
        try:
            reply = await stub.CreateResponse(
                request,
                metadata=(("authorization", f"Bearer {self.api_key}"),),
                timeout=self.deadline,
            )
            code, answer = grpc.StatusCode.OK, reply
        except grpc.aio.AioRpcError as error:
            code, answer = error.code(), None
        finally:
            slots.release()
        self.outcomes.append(
            Outcome(sent, time.monotonic() - sent, self.deadline, code, answer)
        )

    def between(self, start: float, end: float) -> list[Outcome]:
        """The outcomes of requests sent in [start, end)."""
        return [o for o in self.outcomes if start <= o.sent_at < end]


def answered(outcomes: Sequence[Outcome]) -> list[gateway_pb.CreateResponseResponse]:
    """The replies of the successful requests."""
    return [o.reply for o in outcomes if o.reply is not None]


async def gateway_status(suite: Suite) -> gateway_pb.GetStatusResponse | None:
    """The gateway's GetStatus, or None while it cannot answer within 0.5 s."""
    async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            status: gateway_pb.GetStatusResponse = await stub.GetStatus(
                gateway_pb.GetStatusRequest(),
                metadata=(("authorization", f"Bearer {suite.api_key}"),),
                timeout=0.5,
            )
        except grpc.aio.AioRpcError:
            return None
    return status


def breaker_state(status: gateway_pb.GetStatusResponse, name: str) -> int:
    """The state of the breaker called ``name`` (BREAKER_STATE_*)."""
    states = {b.name: b.state for b in status.breakers}
    return states[name]


@dataclass(frozen=True)
class LedgerTotals:
    """What the ledger booked for the suite's tenant."""

    requests: int
    cost_micros: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


async def ledger_totals(suite: Suite, tenant_id: str) -> LedgerTotals:
    """The ledger's totals for ``tenant_id``, from costs.GetReport over gRPC."""
    address = f"127.0.0.1:{suite.ports['costs']}"
    async with grpc.aio.insecure_channel(address) as channel:
        report = await costs_pb2_grpc.CostsServiceStub(channel).GetReport(
            costs_pb.GetReportRequest(tenant_id=tenant_id),
            metadata=(("authorization", f"Bearer {suite.api_key}"),),
            timeout=5,
        )
    line = next((line for line in report.by_tenant if line.key == tenant_id), None)
    return LedgerTotals(
        requests=report.total_requests,
        cost_micros=report.total_cost_micros,
        input_tokens=line.input_tokens if line else 0,
        cached_input_tokens=line.cached_input_tokens if line else 0,
        output_tokens=line.output_tokens if line else 0,
    )
