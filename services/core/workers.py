"""``--workers N``: N processes of one server sharing its ports (SO_REUSEPORT).

``tollgate serve gateway`` and ``tollgate serve all`` run as a supervisor and N
workers. The supervisor is this module: it checks the ports (one that another
process holds fails start-up, as with one worker), keeps each shared port reserved
by a bound, non-listening ``SO_REUSEPORT`` socket (so ``--port 0`` names one port
for all), and starts each worker as ``python -m <module>`` with the resolved ports,
``reuse_port`` and its index in its environment. Every worker listens on the same
gRPC, health and HTTP ports; the kernel spreads new connections across them (a gRPC
connection stays with the worker that accepted it). Each worker's Prometheus
endpoint is its own: ``metrics_port + index``.

The supervisor starts worker 0, waits until it serves (it writes to a pipe), so the
stores' files and schemas exist, then the others, and exits 1 when one cannot
start. Afterwards a worker that dies is started again after 1 s,
doubling up to 30 s while it keeps dying. SIGTERM or SIGINT is passed to every
worker, which drains as on its own (NOT_SERVING, the grace, then stop); the
supervisor exits 0 when all drained. Workers die with the supervisor
(``PR_SET_PDEATHSIG``) so none outlives a killed pod's parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import ServerSettings

_log = structlog.get_logger("tollgate.workers")

RESTART_INITIAL_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_AFTER_SECONDS = 60.0
START_TIMEOUT_SECONDS = 300.0
"""How long a worker may take to serve (the cache loads its model first)."""
STOP_MARGIN_SECONDS = 15.0
"""Past the grace: the outbox drain and closing stores, before SIGKILL."""
SHARED_PORT_FIELDS = {"port": "gRPC", "http_port": "HTTP", "health_port": "health"}
"""Settings fields naming ports every worker listens on together, and their names."""
_PR_SET_PDEATHSIG = 1


class WorkerSettings(BaseSettings):
    """How many workers (``TOLLGATE_WORKERS``), and who a worker is.

    ``worker_index`` and ``worker_ready_fd`` are set by the supervisor in each
    worker's environment, never by an operator.
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_", frozen=True, extra="ignore"
    )

    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Worker processes of `serve gateway` and `serve all` (the "
        "`--workers` flag wins). Unset: the gateway runs one per CPU the container "
        "may use; the all-in-one one per CPU when its state is shared, else 1.",
    )
    worker_index: int | None = Field(
        default=None,
        ge=0,
        description="Set by the supervisor: this worker's index, 0..N-1 (the "
        "`worker` field of its log lines).",
    )
    worker_ready_fd: int | None = Field(
        default=None,
        ge=0,
        description="Set by the supervisor: the pipe a worker writes to once it "
        "serves.",
    )


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the cgroup's CFS quota allows (cgroup v2, else v1), or None unlimited."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    for directory in ("cpu", "cpu,cpuacct"):
        with contextlib.suppress(OSError, ValueError):
            quota_us = int((root / directory / "cpu.cfs_quota_us").read_text())
            period_us = int((root / directory / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    return None


def available_cpus(root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup's CPU quota.

    A fractional quota rounds down (1.5 CPUs: 1 worker), never below 1, as Go's
    automaxprocs does: a second worker on half a CPU would only be throttled.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, math.floor(limit))
    return max(1, count)


def notify_ready(settings: WorkerSettings) -> None:
    """Tell the supervisor this worker serves (nothing when not a worker)."""
    fd = settings.worker_ready_fd
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, b"r")
        os.close(fd)


class PortBusyError(Exception):
    """A port the workers are to share is held by another process."""

    def __init__(self, what: str, host: str, port: int) -> None:
        self.what = what
        self.host = host
        self.port = port
        super().__init__(f"{what} port {host}:{port} is already in use")


def _family(host: str) -> tuple[socket.AddressFamily, str]:
    bare = host.strip("[]")
    return (socket.AF_INET6 if ":" in bare else socket.AF_INET), bare


def reserve_port(host: str, port: int, what: str) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding ``host:port`` (0: any).

    The workers bind the same port beside it; it never accepts a connection. A port
    another process holds is refused first: an SO_REUSEPORT bind alone would
    silently join another server of the same user on it.

    Raises:
        PortBusyError: something listens on ``host:port`` already.
    """
    family, bare = _family(host)
    if port:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # TIME_WAIT leftovers of a previous run do not count; a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((bare, port))
            except OSError as error:
                raise PortBusyError(what, host, port) from error
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((bare, port))
    except OSError as error:
        holder.close()
        raise PortBusyError(what, host, port) from error
    return holder


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_pipe: int | None
    started: float
    ready: bool = False
    failures: int = 0
    restart_at: float | None = None


def restart_delay(failures: int) -> float:
    """Seconds before starting a worker that died ``failures`` times in a row."""
    return min(
        RESTART_MAX_SECONDS, RESTART_INITIAL_SECONDS * 2.0 ** max(0, failures - 1)
    )


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn giving the child SIGTERM when the supervisor dies (Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return hook


class WorkerPool:
    """The supervisor of N workers of one command (see the module docstring).

    Args:
        name: what the workers serve ("gateway", "all"), for log lines.
        argv: the command of a worker.
        env: the environment every worker shares.
        per_worker_env: what differs for worker ``i`` (its metrics port).
        count: how many workers.
        stop_seconds: after SIGTERM, how long workers may drain before SIGKILL.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        per_worker_env: Callable[[int], Mapping[str, str]],
        count: int,
        stop_seconds: float,
    ) -> None:
        self._name = name
        self._argv = argv
        self._env = dict(env)
        self._per_worker_env = per_worker_env
        self._count = count
        self._stop_seconds = stop_seconds
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._preexec = _die_with_parent_hook()

    @property
    def pids(self) -> list[int]:
        """The pids of the workers running now."""
        return [
            w.process.pid for w in self._workers.values() if w.process.poll() is None
        ]

    def _spawn(self, index: int, failures: int = 0) -> _Worker:
        read_end, write_end = os.pipe()
        env = {
            **self._env,
            **self._per_worker_env(index),
            "TOLLGATE_WORKER_INDEX": str(index),
            "TOLLGATE_WORKER_READY_FD": str(write_end),
        }
        try:
            process = subprocess.Popen(
                self._argv,
                env=env,
                pass_fds=(write_end,),
                stdin=subprocess.DEVNULL,
                # Not in the terminal's process group: Ctrl-C reaches the
                # supervisor, which passes SIGTERM on once.
                process_group=0,
                preexec_fn=self._preexec,  # the supervisor runs one thread
            )
        finally:
            os.close(write_end)
        worker = _Worker(index, process, read_end, time.monotonic(), failures=failures)
        self._workers[index] = worker
        return worker

    def _read_ready(self, timeout: float) -> None:
        pipes = {
            w.ready_pipe: w for w in self._workers.values() if w.ready_pipe is not None
        }
        if not pipes:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(list(pipes), [], [], timeout)
            for fd in readable:
                worker = pipes[fd]
                data = b""
                with contextlib.suppress(OSError):
                    data = os.read(fd, 16)
                os.close(fd)
                worker.ready_pipe = None
                if data:
                    worker.ready = True
                    _log.info(
                        "worker_ready", worker=worker.index, pid=worker.process.pid
                    )

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.ready_pipe is not None:
            os.close(worker.ready_pipe)
            worker.ready_pipe = None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stopping = True

    def run(self) -> int:
        """Start the workers, keep them up until SIGTERM/SIGINT, then drain them.

        Returns:
            0 after every worker drained; 1 when they could not all start, or one
            had to be killed when draining.
        """
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # Worker 0 first, alone: it creates the SQLite files and schemas the others
        # then open (two first starts at once on a fresh file can find it locked).
        self._spawn(0)
        _log.info("workers_starting", workers=self._count, target=self._name)
        started = self._wait_started()
        if started:
            for index in range(1, self._count):
                self._spawn(index)
            started = self._wait_started()
        if not started:
            self._stop_all()
            return 1
        _log.info("workers_started", workers=self._count, pids=self.pids)
        while not self._stopping:
            self._read_ready(0.2)
            self._tick(time.monotonic())
        return self._stop_all()

    def _wait_started(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not all(w.ready for w in self._workers.values()):
            if self._stopping:
                return False
            for worker in self._workers.values():
                code = worker.process.poll()
                if code is not None and not worker.ready:
                    _log.error(
                        "worker_failed_to_start",
                        worker=worker.index,
                        pid=worker.process.pid,
                        exit=_describe_exit(code),
                    )
                    return False
            if time.monotonic() > deadline:
                _log.error("workers_start_timeout", seconds=START_TIMEOUT_SECONDS)
                return False
            self._read_ready(0.1)
        return True

    def _tick(self, now: float) -> None:
        for index, worker in list(self._workers.items()):
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    fresh = self._spawn(index, worker.failures)
                    _log.info(
                        "worker_restarted",
                        worker=index,
                        pid=fresh.process.pid,
                        restart=fresh.failures,
                    )
                continue
            code = worker.process.poll()
            if code is None:
                continue
            self._close_pipe(worker)
            if now - worker.started >= RESTART_RESET_AFTER_SECONDS:
                worker.failures = 0
            worker.failures += 1
            delay = restart_delay(worker.failures)
            worker.restart_at = now + delay
            _log.warning(
                "worker_exited",
                worker=index,
                pid=worker.process.pid,
                exit=_describe_exit(code),
                restart_in_seconds=delay,
            )

    def _stop_all(self) -> int:
        live = [w for w in self._workers.values() if w.process.poll() is None]
        _log.info("workers_draining", workers=len(live))
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_seconds
        status = 0
        for worker in live:
            try:
                code = worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                code = worker.process.wait()
            if code != 0:
                status = 1
                _log.warning(
                    "worker_stopped_badly",
                    worker=worker.index,
                    exit=_describe_exit(code),
                )
        for worker in self._workers.values():
            self._close_pipe(worker)
        _log.info("workers_stopped", status=status)
        return status


def _env_name(settings: ServerSettings, field: str) -> str:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def serve_workers(
    name: str,
    module: str,
    services: Mapping[str, ServerSettings],
    count: int,
    extra_env: Mapping[str, str] | None = None,
) -> int:
    """Run ``python -m module`` as ``count`` workers sharing the ports of ``services``.

    Args:
        name: what is served ("gateway", "all"), for log lines.
        module: the worker's module.
        services: each served service's settings, by name; their gRPC, health and
            HTTP ports are shared, their metrics ports become ``port + index``.
        count: how many workers.
        extra_env: more environment for every worker.

    Returns:
        The exit status: 0 after a drain, 1 when a port is busy or a worker could
        not start.
    """
    env = {**os.environ, **(extra_env or {})}
    holders: list[socket.socket] = []
    metrics: dict[str, int] = {}
    try:
        for service, settings in services.items():
            env[_env_name(settings, "host")] = settings.host
            env[_env_name(settings, "reuse_port")] = "true"
            for field, label in SHARED_PORT_FIELDS.items():
                port = getattr(settings, field, None)
                if port is None:
                    continue
                holder = reserve_port(settings.host, int(port), f"{service} {label}")
                holders.append(holder)
                env[_env_name(settings, field)] = str(holder.getsockname()[1])
            if settings.metrics_port:
                metrics[_env_name(settings, "metrics_port")] = settings.metrics_port
    except PortBusyError as error:
        for holder in holders:
            holder.close()
        _log.error("port_busy", error=str(error))
        print(f"tollgate serve {name}: {error}", file=sys.stderr, flush=True)
        return 1
    grace = max(s.grace_seconds for s in services.values())
    pool = WorkerPool(
        name,
        [sys.executable, "-m", module],
        env,
        lambda i: {key: str(base + i) for key, base in metrics.items()},
        count,
        grace + STOP_MARGIN_SECONDS,
    )
    try:
        return pool.run()
    finally:
        for holder in holders:
            holder.close()
