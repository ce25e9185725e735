"""How many workers a container gets, and how their shared ports are reserved."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from services.allinone import AllInOneSettings, unshared_state
from services.core.workers import (
    PortBusyError,
    available_cpus,
    cgroup_cpu_limit,
    reserve_port,
    restart_delay,
)


def _cgroup_v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def _cgroup_v1(root: Path, quota: int, period: int) -> Path:
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_cgroup_v2_quota_is_cpus(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path, "150000 100000\n")) == 1.5
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path, "max 100000\n")) is None


def test_cgroup_v1_quota_is_cpus(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(_cgroup_v1(tmp_path / "a", 300000, 100000)) == 3.0
    assert cgroup_cpu_limit(_cgroup_v1(tmp_path / "b", -1, 100000)) is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None


def test_workers_follow_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path / "none") == affinity
    # A fraction rounds down, never below one.
    assert available_cpus(_cgroup_v2(tmp_path / "half", "50000 100000")) == 1
    assert available_cpus(_cgroup_v2(tmp_path / "one5", "150000 100000")) == 1
    many = _cgroup_v2(tmp_path / "many", f"{(affinity + 8) * 100000} 100000")
    assert available_cpus(many) == affinity


def test_restart_delay_doubles_up_to_thirty_seconds() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 6, 7, 20)] == [1, 2, 4, 30, 30, 30]


def test_a_port_held_by_a_listener_is_refused() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # Even a listener that allows SO_REUSEPORT: the workers never join it.
        with pytest.raises(PortBusyError, match=f"gateway gRPC port 127.0.0.1:{port}"):
            reserve_port("127.0.0.1", port, "gateway gRPC")


def test_a_reserved_port_is_shared_by_workers_and_by_no_one_else() -> None:
    with reserve_port("127.0.0.1", 0, "gateway gRPC") as holder:
        port = holder.getsockname()[1]
        workers = []
        for _ in range(2):
            worker = socket.socket()
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            workers.append(worker)
        with socket.socket() as stranger, pytest.raises(OSError):
            stranger.bind(("127.0.0.1", port))
        for worker in workers:
            worker.close()


def test_all_in_one_state_in_memory_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_GATEWAY_KEYS_FILE", "keys.yaml")
    monkeypatch.setenv("TOLLGATE_GATEWAY_OPENAI_API_KEY", "sk-unused")
    problems = unshared_state(AllInOneSettings.load())
    assert len(problems) == 4  # ratelimit, router, exact tier, semantic index
    monkeypatch.setenv("TOLLGATE_RATELIMIT_REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("TOLLGATE_ROUTER_REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("TOLLGATE_CACHE_EXACT_BACKEND", "redis")
    monkeypatch.setenv("TOLLGATE_CACHE_SEMANTIC_BACKEND", "qdrant")
    assert unshared_state(AllInOneSettings.load()) == []
    monkeypatch.setenv("TOLLGATE_COSTS_DATABASE_PATH", ":memory:")
    (problem,) = unshared_state(AllInOneSettings.load())
    assert "ledger" in problem
