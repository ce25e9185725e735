"""Real backends for integration tests: a redis-server on a free port, a Postgres DB.

The machine's own Redis on 6379 is never touched: each test session starts its own
``redis-server`` on a free loopback port. With TOLLGATE_REQUIRE_INTEGRATION=1 (CI), a
missing backend fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _require_or_skip(reason: str) -> None:
    if os.environ.get("TOLLGATE_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"integration backend missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port the kernel says is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server process on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            _require_or_skip("redis-server is not installed")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2
                ) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        """Kill the server (as a crash would)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the test session; tests flush what they use."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A fresh Postgres database on the local server, dropped after the session."""
    try:
        import psycopg
    except ImportError:
        _require_or_skip("psycopg is not installed")
        raise
    admin_dsn = os.environ.get("TOLLGATE_TEST_POSTGRES_ADMIN_DSN", "dbname=postgres")
    name = f"tollgate_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        _require_or_skip(f"PostgreSQL is not reachable: {error}")
    yield f"dbname={name}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
