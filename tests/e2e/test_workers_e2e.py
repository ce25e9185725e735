"""``--workers N``: real worker processes sharing the gateway's ports.

The gateway runs as a supervisor and two workers on free loopback ports; the
access log's ``pid`` field says which worker answered. Its downstream services are
not started (``/v1/models`` and an authentication failure need none of them),
except for the all-in-one, which runs whole against the simulator and a real
redis-server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import write_keys_file
from tests.backends import RedisServer
from tests.e2e.conftest import E2E_KEY, free_ports

pytestmark = pytest.mark.e2e

START_SECONDS = 90.0


@dataclass
class Pool:
    """A supervisor started by a test, its ports and its log."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log: Path
    err: Path

    def lines(self) -> list[dict[str, object]]:
        """The JSON log lines written so far."""
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def workers(self) -> list[int]:
        """Pids of the supervisor's live workers."""
        return [
            child.pid
            for child in psutil.Process(self.process.pid).children()
            if child.status() != psutil.STATUS_ZOMBIE
        ]

    def access_pids(self) -> set[int]:
        """The worker pids named by access lines."""
        return {
            int(str(line["pid"])) for line in self.lines() if line["event"] == "access"
        }

    def stop(self) -> None:
        """SIGTERM the supervisor, SIGKILL its group if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "OPENAI_"))
    }


def _gateway_env(state: Path, http_port: int) -> dict[str, str]:
    keys = write_keys_file(state, E2E_KEY)
    # Nothing listens on port 1: the gateway starts without its downstreams.
    return {
        **_clean_env(),
        **{
            f"TOLLGATE_GATEWAY_{name.upper()}_ADDRESS": "127.0.0.1:1"
            for name in ("ratelimit", "cache", "router", "costs")
        },
        "TOLLGATE_GATEWAY_OPENAI_API_KEY": "sk-unused",
        "TOLLGATE_GATEWAY_KEYS_FILE": str(keys),
        "TOLLGATE_GATEWAY_KEY_STORE_PATH": str(state / "keys.sqlite3"),
        "TOLLGATE_GATEWAY_OUTBOX_PATH": str(state / "outbox.sqlite3"),
        "TOLLGATE_GATEWAY_BATCH_STORE_PATH": str(state / "batches.sqlite3"),
        "TOLLGATE_GATEWAY_HTTP_FILES_DIR": str(state / "files"),
        "TOLLGATE_GATEWAY_HTTP_PORT": str(http_port),
        "TOLLGATE_GATEWAY_GRACE_SECONDS": "1",
    }


def _start(
    args: list[str], env: dict[str, str], state: Path, grpc_port: int, http_port: int
) -> Pool:
    log, err = state / "pool.log", state / "pool.err"
    with log.open("wb") as out, err.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=env,
            stdout=out,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pool = Pool(process, grpc_port, http_port, log, err)
    deadline = time.monotonic() + START_SECONDS
    while not any(line["event"] == "workers_started" for line in pool.lines()):
        if process.poll() is not None or time.monotonic() > deadline:
            pool.stop()
            raise AssertionError(
                f"the workers did not start: {err.read_text()[-2000:]}"
                f"{log.read_text()[-2000:]}"
            )
        time.sleep(0.1)
    return pool


def start_gateway(state: Path, workers: int = 2) -> Pool:
    """``python -m services.gateway --workers N`` on free ports."""
    grpc_port, http_port = free_ports(2)
    return _start(
        ["services.gateway", "--port", str(grpc_port), "--workers", str(workers)],
        _gateway_env(state, http_port),
        state,
        grpc_port,
        http_port,
    )


def models(pool: Pool) -> int:
    """GET /v1/models on a new connection (urllib closes each); the HTTP status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{pool.http_port}/v1/models",
        headers={"authorization": f"Bearer {E2E_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def grpc_call(pool: Pool, attempt: int) -> grpc.StatusCode:
    """One CreateResponse with an unknown key, on a connection of its own."""
    # A channel of its own subchannel pool: a new TCP connection every time.
    options = [("grpc.use_local_subchannel_pool", 1), ("tollgate.attempt", attempt)]
    with grpc.insecure_channel(f"127.0.0.1:{pool.grpc_port}", options) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            stub.CreateResponse(
                gateway_pb.CreateResponseRequest(input="hi"),
                metadata=(("authorization", "Bearer tg_not_a_key_0123456789"),),
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A gateway of two workers, shared by the tests that do not stop it."""
    running = start_gateway(tmp_path_factory.mktemp("workers"))
    yield running
    running.stop()


def _wait_access(pool: Pool, before: int, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        lines = [x for x in pool.lines() if x["event"] == "access"][before:]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_two_workers_answer_http_on_one_port(pool: Pool) -> None:
    workers = pool.workers()
    assert len(workers) == 2
    before = len([x for x in pool.lines() if x["event"] == "access"])
    assert [models(pool) for _ in range(24)] == [200] * 24
    lines = _wait_access(pool, before, 24)
    pids = {int(str(line["pid"])) for line in lines}
    # 24 connections spread by the kernel: both workers answered, nobody else.
    assert pids == set(workers)


def test_two_workers_answer_grpc_on_one_port(pool: Pool) -> None:
    workers = pool.workers()
    before = len([x for x in pool.lines() if x["event"] == "access"])
    codes = {grpc_call(pool, i) for i in range(24)}
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    lines = _wait_access(pool, before, 24)
    assert {str(line["rpc"]) for line in lines} == {
        "/tollgate.gateway.v1.GatewayService/CreateResponse"
    }
    assert {int(str(line["pid"])) for line in lines} == set(workers)


def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(pool: Pool) -> None:
    victim, survivor = pool.workers()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(victim):
        assert time.monotonic() < deadline, "the worker did not die"
        time.sleep(0.05)
    # The dead worker's listener is gone with it: the port answers on, from the
    # survivor (a connection the kernel queued to the dying listener may be reset:
    # allow that within the first second, then every new connection is answered).
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        with contextlib.suppress(ConnectionError):
            models(pool)
    assert [models(pool) for _ in range(12)] == [200] * 12
    deadline = time.monotonic() + 15
    while len(pool.workers()) < 2 or victim in pool.workers():
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.1)
    (fresh,) = set(pool.workers()) - {survivor}
    # The supervisor logs the restart just after it spawns the worker: the new
    # child can be seen a moment before its line is written.
    deadline = time.monotonic() + 5
    while ("worker_restarted", fresh) not in (
        events := [(x["event"], x.get("pid")) for x in pool.lines()]
    ):
        assert time.monotonic() < deadline, "no worker_restarted line for it"
        time.sleep(0.05)
    assert ("worker_exited", victim) in events
    # The new worker serves on the same port once it is up.
    deadline = time.monotonic() + 30
    while fresh not in pool.access_pids():
        assert time.monotonic() < deadline, "the restarted worker never answered"
        assert models(pool) == 200
    assert pool.process.poll() is None


def test_sigterm_drains_every_worker_and_exits_zero(tmp_path: Path) -> None:
    running = start_gateway(tmp_path)
    workers = running.workers()
    assert models(running) == 200
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(30) == 0
    assert not any(_alive(pid) for pid in workers)
    events = [x["event"] for x in running.lines()]
    assert events.count("server_draining") == 2
    assert events.count("server_stopped") == 2
    assert any(
        x["event"] == "workers_stopped" and x["status"] == 0 for x in running.lines()
    )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_busy_port_fails_start_up_clearly(tmp_path: Path) -> None:
    with socket.socket() as holder:
        # A listener that allows SO_REUSEPORT too: neither mode joins it silently.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        for workers in ("1", "2"):
            done = subprocess.run(
                [
                    *(sys.executable, "-m", "services.cli", "serve", "gateway"),
                    *("--port", str(busy), "--workers", workers),
                ],
                env=_gateway_env(tmp_path, 0),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 1, done.stderr
            last = done.stderr.strip().splitlines()[-1]
            assert last.startswith("tollgate serve gateway:"), done.stderr
            assert f"127.0.0.1:{busy}" in last
            assert "in use" in last


def test_all_in_one_refuses_workers_with_in_memory_state(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "all", "--workers", "2"],
        env={
            **_clean_env(),
            "TOLLGATE_GATEWAY_KEYS_FILE": str(tmp_path / "k.yaml"),
            "TOLLGATE_GATEWAY_OPENAI_API_KEY": "sk-unused",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "TOLLGATE_RATELIMIT_REDIS_URL" in done.stderr
    assert "TOLLGATE_ROUTER_REDIS_URL" in done.stderr
    assert "TOLLGATE_CACHE_EXACT_BACKEND=redis" in done.stderr


def test_workers_is_refused_for_a_downstream_service() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "ratelimit", "--workers", "2"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers is for gateway and all" in done.stderr


RPM = 5
LIMITS = f"""
default_tier: paid
tiers: {{paid: {{rpm: {RPM}, tpm: 1000000000}}}}
services: {{chat: 1.0}}
"""


def _free_port_block(count: int) -> int:
    """The first of ``count`` consecutive ports, all free now."""
    for first in range(30000, 60000, 97):
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def test_all_in_one_workers_share_one_rate_limit_and_one_metrics_registry_each(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    ports = free_ports(7)
    grpc_port, http_port, simulator_port, *downstream = ports
    simulator = subprocess.Popen(
        [sys.executable, "-m", "services.simulator", "--port", str(simulator_port)],
        env={**_clean_env(), "TOLLGATE_SIMULATOR_LATENCY_MS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    limits = tmp_path / "limits.yaml"
    limits.write_text(LIMITS, encoding="utf-8")
    redis_url = f"redis://127.0.0.1:{redis_server.port}/7"
    env = {
        **_gateway_env(tmp_path, http_port),
        "TOLLGATE_GATEWAY_OPENAI_BASE_URL": f"http://127.0.0.1:{simulator_port}/v1",
        "TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits),
        "TOLLGATE_RATELIMIT_REDIS_URL": redis_url,
        "TOLLGATE_RATELIMIT_REDIS_KEY_PREFIX": f"{{tg-{grpc_port}}}:",
        "TOLLGATE_ROUTER_REDIS_URL": redis_url,
        "TOLLGATE_CACHE_EXACT_BACKEND": "redis",
        "TOLLGATE_CACHE_REDIS_URL": redis_url,
        "TOLLGATE_CACHE_SEMANTIC_BACKEND": "disabled",
        "TOLLGATE_COSTS_DATABASE_PATH": str(tmp_path / "costs.sqlite3"),
    }
    for name, port in zip(
        ("ratelimit", "cache", "router", "costs"), downstream, strict=True
    ):
        env[f"TOLLGATE_{name.upper()}_PORT"] = str(port)
        env.pop(f"TOLLGATE_GATEWAY_{name.upper()}_ADDRESS")
    # Metrics ports side by side, as `tollgate dev` gives them (51051..51055): a
    # worker's `port + index` would meet the next service's port if each service
    # served its own endpoint. The process serves one, the gateway's.
    metrics_port = _free_port_block(5)
    for offset, name in enumerate(("gateway", "ratelimit", "cache", "router", "costs")):
        env[f"TOLLGATE_{name.upper()}_METRICS_PORT"] = str(metrics_port + offset)
    running = _start(
        ["services.cli", "serve", "all", "--port", str(grpc_port), "--workers", "2"],
        env,
        tmp_path,
        grpc_port,
        http_port,
    )
    try:
        workers = running.workers()
        assert len(workers) == 2
        statuses = [_chat(running, i) for i in range(3 * RPM)]
        # One bucket for the user, in Redis: the two workers admit RPM together,
        # not RPM each.
        assert statuses.count(200) == RPM, statuses
        assert statuses.count(429) == 2 * RPM, statuses
        assert running.access_pids() == set(workers)
        # Each worker's registry holds every service's series, on its own port.
        for index in range(2):
            url = f"http://127.0.0.1:{metrics_port + index}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert b"\ntollgate_ratelimit_decisions_total{" in response.read()
    finally:
        running.stop()
        simulator.terminate()
        simulator.wait(10)
    assert running.process.returncode == 0


def _chat(pool: Pool, i: int) -> int:
    body = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": f"question {i} of the workers test"}],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{pool.http_port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "authorization": f"Bearer {E2E_KEY}",
            "content-type": "application/json",
            "x-tollgate-cache": "bypass",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
