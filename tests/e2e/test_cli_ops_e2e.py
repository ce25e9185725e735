"""`tollgate report`, `usage`, `status` and `degrade` against a running suite."""

from __future__ import annotations

import csv
import io
import time

import grpc
import pytest
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.cli import main
from services.devsuite import Suite
from services.gateway.auth import hash_key, key_id_of
from tests.e2e.conftest import E2E_KEY

pytestmark = pytest.mark.e2e

AUTH = (("authorization", f"Bearer {E2E_KEY}"),)
QUESTIONS = ("What is a token bucket?", "Name three prime numbers.")


@pytest.fixture(autouse=True)
def _suite_state(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands find the suite's dev key (and no TLS) in its state directory."""
    monkeypatch.setenv("TOLLGATE_STATE_DIR", str(suite.state_dir))
    monkeypatch.setenv("TOLLGATE_GATEWAY_ADDRESS", suite.gateway_address)


@pytest.fixture(scope="module")
def answered(suite: Suite) -> int:
    """Ask the suite a few questions; wait until the ledger has booked them."""
    with grpc.insecure_channel(suite.gateway_address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for question in QUESTIONS:
            stub.CreateResponse(
                gateway_pb.CreateResponseRequest(input=question, cache_bypass=True),
                metadata=AUTH,
                timeout=30,
            )
        for _ in range(200):  # records are booked after each answer
            usage: gateway_pb.GetUsageResponse = stub.GetUsage(
                gateway_pb.GetUsageRequest(), metadata=AUTH
            )
            if usage.requests >= len(QUESTIONS):
                return usage.requests
            time.sleep(0.05)
    raise AssertionError("the ledger never booked the answers")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _service_flags(suite: Suite) -> list[str]:
    return [
        flag
        for name in ("ratelimit", "cache", "router", "costs")
        for flag in (f"--{name}-address", f"127.0.0.1:{suite.ports[name]}")
    ]


@pytest.mark.parametrize(
    ("by", "column"),
    [
        ("tenant", "tenant_id"),
        ("key", "api_key_id"),
        ("user", "user_id"),
        ("service", "service"),
        ("model", "model"),
        ("day", "day"),
    ],
)
def test_report_as_csv_each_way(
    suite: Suite,
    answered: int,
    capsys: pytest.CaptureFixture[str],
    by: str,
    column: str,
) -> None:
    status, out = _run(capsys, "report", "--by", by, "--csv")

    assert status == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows, out
    assert sum(int(row["requests"]) for row in rows) >= answered
    assert all(int(row["cost_micros"]) >= 0 for row in rows)
    labels = {row[column] for row in rows}
    expected = {
        "tenant_id": {"dev"},
        "api_key_id": {key_id_of(hash_key(E2E_KEY))},
        "user_id": {"dev-user"},
        "service": {"chat"},
    }
    if column in expected:
        assert labels == expected[column]


def test_report_as_a_table_with_a_total(
    suite: Suite, answered: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _run(capsys, "report", "--by", "user", "--since", "1d")

    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("usage by user, ")
    assert lines[1].split()[:2] == ["USER_ID", "REQUESTS"]
    assert lines[2].split()[0] == "dev-user"
    total = lines[3].split()
    assert total[0] == "total" and int(total[1]) >= answered


def test_report_needs_an_admin_key(
    suite: Suite, answered: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _run(capsys, "report", "--key", "tg_not_an_admin_key")

    assert status == 1
    assert "PERMISSION_DENIED" in out


def test_usage_shows_the_keys_own_spend_and_headroom(
    suite: Suite, answered: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _run(capsys, "usage")

    assert status == 0, out
    assert out.startswith(f"key {key_id_of(hash_key(E2E_KEY))} (tenant dev), ")
    assert "MODEL" in out and "DAY" in out
    # The dev key's tier limits requests per minute (no token limit of its own).
    assert "\nrate limits\n  requests: " in out
    assert " of 100 per minute left" in out


def test_status_prints_every_section(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _run(capsys, "status", *_service_flags(suite))

    assert status == 0, out
    sections = [line for line in out.splitlines() if line and not line[0].isspace()]
    assert sections[:5] == ["health", "degradation", "breakers", "queues", "outbox"]
    assert sections[5].startswith("gateway version ")
    for name in ("gateway", "ratelimit", "cache", "router", "costs"):
        assert f"  {name}" in out
    assert out.count("SERVING") == 5
    assert "router level in force: full_service (0)" in out
    for priority in ("critical", "realtime", "standard", "batch", "low"):
        assert f"  {priority} " in out
    assert "usage records waiting for the ledger: 0" in out


def test_status_says_what_is_unreachable(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = _service_flags(suite)
    flags[flags.index("--cache-address") + 1] = "127.0.0.1:9"

    status, out = _run(capsys, "status", *flags)

    assert status == 1
    assert "unreachable (UNAVAILABLE)" in out
    assert "outbox" in out  # the other sections are still shown


def test_degrade_for_a_while_shows_in_status_then_is_undone(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    router = ["--router-address", f"127.0.0.1:{suite.ports['router']}"]

    set_status, set_out = _run(
        capsys, "degrade", "cached_only", "--for", "1h", "--reason", "drill", *router
    )
    _, during = _run(capsys, "status", *_service_flags(suite))
    back_status, back_out = _run(capsys, "degrade", "0", *router)
    _, after = _run(capsys, "status", *_service_flags(suite))

    assert set_status == 0, set_out
    assert set_out.startswith("degradation level cached_only (2) until ")
    assert set_out.rstrip().endswith("(was full_service (0))")
    assert "router level in force: cached_only (2) until " in during
    assert back_status == 0, back_out
    assert "degradation level full_service (0) until changed" in back_out
    assert "router level in force: full_service (0)\n" in after
