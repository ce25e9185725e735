"""`tollgate dev` itself, as a user runs it: it restarts a service that dies, and a
busy port is one line naming it.

Ports come from TOLLGATE_DEV_PORTS, free ones, so that these runs never meet the
defaults another suite on the machine may hold.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devsuite import DEFAULT_PORTS, service_ready
from tests.e2e.conftest import E2E_KEY, free_ports

pytestmark = pytest.mark.e2e


def _env(ports: dict[str, int]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOLLGATE_", "OPENAI_"))
    }
    env["TOLLGATE_DEV_PORTS"] = json.dumps(ports)
    env["TOLLGATE_DEV_API_KEY"] = E2E_KEY
    return env


def _dev(
    tmp_path: Path, ports: dict[str, int]
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "dev.out", tmp_path / "dev.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "dev", "--state-dir", str(tmp_path)],
            env=_env(ports),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            # Its own session: a failed test can end the CLI and every child.
            start_new_session=True,
        )
    return process, out, err


def _wait_for(path: Path, pattern: str, within: float) -> re.Match[str]:
    deadline = time.monotonic() + within
    while True:
        found = re.search(pattern, path.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            return found
        assert time.monotonic() < deadline, f"no {pattern!r} in {path.read_text()}"
        time.sleep(0.1)


@pytest.fixture
def ports() -> dict[str, int]:
    return dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))


@pytest.fixture
def running_dev(
    tmp_path: Path, ports: dict[str, int]
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    process, out, err = _dev(tmp_path, ports)
    try:
        yield process, out, err
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_service_killed_under_dev_comes_back_and_dev_says_so(
    running_dev: tuple[subprocess.Popen[bytes], Path, Path], ports: dict[str, int]
) -> None:
    process, out, err = running_dev
    _wait_for(out, r"Ctrl-C stops everything", within=90)
    router = _wait_for(out, r"^  router +127\.0\.0\.1:(\d+) +pid (\d+) ", within=1)
    assert int(router[1]) == ports["router"]
    old_pid = int(router[2])

    os.kill(old_pid, signal.SIGKILL)

    _wait_for(err, r"^router exited with signal SIGKILL; restarting in 1s", within=10)
    back = _wait_for(err, r"^router restarted \(pid (\d+), restart 1\)$", within=10)
    assert int(back[1]) != old_pid
    deadline = time.monotonic() + 30
    while not service_ready(ports["router"]):
        assert time.monotonic() < deadline, "the router did not come back"
        time.sleep(0.1)
    assert process.poll() is None, "the suite kept running"
    assert service_ready(ports["gateway"])

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in err.read_text(encoding="utf-8")


def test_a_busy_port_is_one_line_naming_it(
    tmp_path: Path, ports: dict[str, int]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["gateway"]))
        holder.listen()
        process, out, err = _dev(tmp_path, ports)
        try:
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    lines = err.read_text(encoding="utf-8").splitlines()
    port = ports["gateway"]
    assert code == 1
    assert lines == [
        f"tollgate dev: port {port} (gateway) is already in use; stop what holds it, "
        f"""or move it with TOLLGATE_DEV_PORTS='{{"gateway": <port>}}'"""
    ]
    assert out.read_text(encoding="utf-8").splitlines() == [
        "starting tollgate (simulator and five services)..."
    ]
    assert not (tmp_path / "logs").exists(), "nothing was started"
