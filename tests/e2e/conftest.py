"""The suite as `tollgate dev` starts it: separate processes on free loopback ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devsuite import DEFAULT_PORTS, Suite, start_suite

E2E_KEY = "tg_e2e_test_key_0123456789"


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free now (bound and released at once)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_test_suite(state_dir: Path, extra_env: dict[str, str] | None = None) -> Suite:
    """Start the whole suite on free ports with the simulator as upstream."""
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    clean_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOLLGATE_", "OPENAI_"))
    }
    return start_suite(
        state_dir, E2E_KEY, ports=ports, extra_env=extra_env, base_env=clean_env
    )


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """One suite shared by the tests of a module."""
    running = start_test_suite(tmp_path_factory.mktemp("suite"))
    yield running
    running.stop()
