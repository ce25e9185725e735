"""`tollgate dev`'s supervisor and port check, on tiny real child processes.

The supervisor's clock is a FakeClock: backoff is driven by advancing it, and each
child's death is awaited with ``wait()``, so nothing here sleeps.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.clock import FakeClock
from services.devsuite import (
    PortBusyError,
    Suite,
    Supervisor,
    _launch,
    check_ports,
    describe_exit,
    restart_delay,
)
from tests.backends import free_port

# Exits with 3, or runs until killed when the file given says "run".
CHILD = (
    "import pathlib, sys, time\n"
    "if pathlib.Path(sys.argv[1]).read_text() == 'run':\n"
    "    time.sleep(600)\n"
    "sys.exit(3)\n"
)


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    mode = tmp_path / "mode"
    mode.write_text("exit", encoding="utf-8")
    child = _launch(
        "flaky",
        1,
        [sys.executable, "-c", CHILD, str(mode)],
        {},
        tmp_path / "logs" / "flaky.log",
    )
    running = Suite(tmp_path, "key", {"flaky": 1}, "", {"flaky": child})
    yield running
    running.stop()


def test_restart_delay_doubles_from_one_second_up_to_thirty() -> None:
    assert [restart_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_describe_exit_names_the_signal_or_the_code() -> None:
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(3) == "exit code 3"


def test_a_dead_child_is_restarted_after_a_growing_backoff_and_it_says_so(
    suite: Suite, tmp_path: Path
) -> None:
    clock = FakeClock()
    said: list[str] = []
    supervisor = Supervisor(suite, said.append, clock)
    log = suite.processes["flaky"].log_path

    suite.processes["flaky"].process.wait()
    supervisor.tick()
    supervisor.tick()
    clock.advance(0.9)
    supervisor.tick()
    assert said == [f"flaky exited with exit code 3; restarting in 1s (see {log})"]

    first = suite.processes["flaky"].process
    clock.advance(0.1)
    supervisor.tick()
    second = suite.processes["flaky"].process
    assert second is not first
    assert said[1] == f"flaky restarted (pid {second.pid}, restart 1)"
    assert second.args == first.args

    second.wait()
    supervisor.tick()
    assert said[2] == f"flaky exited with exit code 3; restarting in 2s (see {log})"
    (tmp_path / "mode").write_text("run", encoding="utf-8")
    clock.advance(2)
    supervisor.tick()
    third = suite.processes["flaky"].process
    assert said[3] == f"flaky restarted (pid {third.pid}, restart 2)"

    # A minute up counts as healthy: the next death starts the backoff afresh.
    clock.advance(60)
    supervisor.tick()
    assert len(said) == 4
    third.kill()
    third.wait()
    supervisor.tick()
    assert said[4] == (
        f"flaky exited with signal SIGKILL; restarting in 1s (see {log})"
    )


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        free = free_port()
        with pytest.raises(PortBusyError) as caught:
            check_ports({"gateway": free, "gateway_http": taken})
    assert (caught.value.name, caught.value.port) == ("gateway_http", taken)
    assert str(caught.value) == f"port {taken} (gateway_http) is already in use"


def test_a_port_given_twice_is_named() -> None:
    port = free_port()
    with pytest.raises(PortBusyError) as caught:
        check_ports({"gateway": port, "costs": port})
    assert str(caught.value) == f"port {port} (costs) is also given to gateway"


def test_free_ports_pass() -> None:
    check_ports({"gateway": free_port()})
