"""The example clients (examples/node, examples/python) against a running suite.

The Node.js client loads protos/ at run time with @grpc/proto-loader; its own tests
(`node --test` in examples/node) run here with the suite's address and key. The Python
example uses the generated stubs and waits out RetryInfo on RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import DEV_TENANT, Suite
from tests.e2e.conftest import E2E_KEY, start_test_suite

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
ASK_PY = ROOT / "examples" / "python" / "ask.py"
# An end user with a limit of its own: 12 RPM refills one request every 5 seconds.
THROTTLED_USER = "throttled-user"
THROTTLED_RPM = 12
# Written into node_modules after a successful `npm ci`: the lock file it installed.
LOCK_STAMP = ".tollgate-lock-sha256"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    state_dir = tmp_path_factory.mktemp("clients")
    limits = state_dir / "limits.yaml"
    limits.write_text(
        yaml.safe_dump(
            {"users": {f"{DEV_TENANT}:{THROTTLED_USER}": {"rpm": THROTTLED_RPM}}}
        ),
        encoding="utf-8",
    )
    running = start_test_suite(
        state_dir, extra_env={"TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits)}
    )
    yield running
    running.stop()


def client_env(suite: Suite) -> dict[str, str]:
    """The machine's environment without Tollgate settings, plus address and key."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TOLLGATE_", "OPENAI_"))
    }
    env["TOLLGATE_GATEWAY_ADDRESS"] = suite.gateway_address
    env["TOLLGATE_API_KEY"] = E2E_KEY
    return env


def _require_tools(*names: str) -> dict[str, str]:
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = f"{', '.join(missing)} not on PATH"
        if os.environ.get("TOLLGATE_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"{message} (TOLLGATE_REQUIRE_INTEGRATION=1)")
        pytest.skip(message)
    return {name: path for name, path in found.items() if path is not None}


@pytest.fixture(scope="module")
def node() -> str:
    """node, with examples/node/node_modules installed from package-lock.json."""
    tools = _require_tools("node", "npm")
    lock_digest = hashlib.sha256(
        (NODE_DIR / "package-lock.json").read_bytes()
    ).hexdigest()
    stamp = NODE_DIR / "node_modules" / LOCK_STAMP
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != lock_digest:
        # --ignore-scripts: protobufjs' postinstall only prints a version check.
        subprocess.run(
            [
                tools["npm"],
                "ci",
                "--ignore-scripts",
                "--prefer-offline",
                "--no-audit",
                "--no-fund",
            ],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
        stamp.write_text(lock_digest, encoding="utf-8")
    return tools["node"]


def tap_counts(output: str) -> dict[str, int]:
    """The summary counts node's test runner prints last (`# pass 5`)."""
    return {
        name: int(count)
        for name, count in re.findall(r"^# (\w+) (\d+)$", output, re.MULTILINE)
    }


def test_node_client_calls_create_and_stream_response(node: str, suite: Suite) -> None:
    result = subprocess.run(
        [node, "--test"],
        cwd=NODE_DIR,
        env=client_env(suite),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = tap_counts(result.stdout)
    assert counts["fail"] == 0, output
    assert counts["skipped"] == 0, output
    assert counts["pass"] == counts["tests"] == 5, output


def run_ask(suite: Suite, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ASK_PY), *args],
        env=client_env(suite),
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_python_example_create_then_exact_hit(suite: Suite) -> None:
    first = run_ask(suite, "What does the python example print?")
    second = run_ask(suite, "What does the python example print?")

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith('Simulated answer to "What does the python example')
    assert re.search(
        r"\[gpt-4\.1-mini, cache MISS, \d+\+\d+ tokens, [1-9]\d* ", first.stdout
    )
    assert second.returncode == 0, second.stderr
    assert "cache EXACT" in second.stdout
    assert " 0 micro-USD" in second.stdout


def test_python_example_streams_deltas_then_usage(suite: Suite) -> None:
    result = run_ask(suite, "--stream", "Stream me an answer from python")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[gpt-4.1-mini, cache MISS]"
    assert lines[1].startswith('Simulated answer to "Stream me')
    assert re.fullmatch(r"\[\d+\+\d+ tokens, [1-9]\d* micro-USD\]", lines[-1])


def test_python_example_gives_up_or_waits_out_retry_info(suite: Suite) -> None:
    request = gateway_pb.CreateResponseRequest(
        input="Drain the throttled user's bucket", user_id=THROTTLED_USER
    )
    with grpc.insecure_channel(suite.gateway_address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(THROTTLED_RPM + 1):
            try:
                stub.CreateResponse(
                    request, metadata=(("authorization", f"Bearer {E2E_KEY}"),)
                )
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                break
        else:
            pytest.fail(f"{THROTTLED_RPM + 1} requests of a {THROTTLED_RPM} RPM user")

    question = ("--user", THROTTLED_USER, "Am I limited?")
    limited = run_ask(suite, "--max-wait", "0", *question)

    assert limited.returncode == 3, limited.stdout + limited.stderr
    assert limited.stderr.startswith("RESOURCE_EXHAUSTED RATE_LIMITED: ")
    match = re.search(r"retry after (\d+\.\d) s: more than --max-wait", limited.stderr)
    assert match is not None, limited.stderr
    assert 0 < float(match[1]) <= 60 / THROTTLED_RPM

    waited = run_ask(suite, "--max-wait", "30", *question)

    assert waited.returncode == 0, waited.stderr
    assert re.search(r"retrying in \d+\.\d s", waited.stderr), waited.stderr
    assert waited.stdout.startswith('Simulated answer to "Am I limited')
