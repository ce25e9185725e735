"""The example clients (examples/node, examples/python) against a running suite.

The Node.js client loads protos/ at run time with @grpc/proto-loader; its own tests
(`node --test test/client.test.js` in examples/node) run here with the suite's address
and key. The Python example uses the generated stubs and waits out RetryInfo on
RESOURCE_EXHAUSTED. Both tools examples (a tool-calling loop, then a json_schema
answer) run as scripts, and so does `tollgate ask` with --stream and --json-schema.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jsonschema
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
TOOLS_PY = ROOT / "examples" / "python" / "tools.py"
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
    # Only the gRPC client's file: test/http.test.js needs the HTTP door's settings.
    result = subprocess.run(
        [node, "--test", "test/client.test.js"],
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
    assert counts["pass"] == counts["tests"] == 8, output


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


STRUCTURED_HEADER = "\n== structured output (json_schema trip_plan) ==\n"


def check_tools_output(
    stdout: str, weather_parameters: dict[str, Any], trip_schema: dict[str, Any]
) -> None:
    """The tool was called with valid arguments, the answer quotes its result, and
    the structured answer validates."""
    tool_part, structured = stdout.split(STRUCTURED_HEADER)
    call = re.search(r"^model calls get_weather \((\S+)\) with (.+)$", tool_part, re.M)
    assert call is not None, stdout
    jsonschema.validate(json.loads(call[2]), weather_parameters)
    result = re.search(r"^tool get_weather returns (.+)$", tool_part, re.M)
    assert result is not None, stdout
    assert "temperature" in json.loads(result[1]), result[1]
    answer = re.search(r"^answer \(FINISH_REASON_STOP\): (.+)$", tool_part, re.M)
    assert answer is not None, stdout
    assert f'The get_weather tool returned "{result[1]}"' in answer[1]
    jsonschema.validate(json.loads(structured), trip_schema)


def test_python_tools_example_runs_the_tool_loop_and_a_json_schema(
    suite: Suite,
) -> None:
    spec = importlib.util.spec_from_file_location("tools_example", TOOLS_PY)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    result = subprocess.run(
        [sys.executable, str(TOOLS_PY), "--city", "Lisbon"],
        env=client_env(suite),
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        "== tool calling ==\nuser: Use get_weather: what is it like in Lisbon?\n"
    )
    check_tools_output(result.stdout, example.WEATHER_PARAMETERS, example.TRIP_SCHEMA)


def test_node_tools_example_runs_the_tool_loop_and_a_json_schema(
    node: str, suite: Suite
) -> None:
    schemas = json.loads(
        subprocess.run(
            [
                node,
                "-e",
                "const t = require('./tools'); console.log(JSON.stringify("
                "{ weather: t.WEATHER_PARAMETERS, trip: t.TRIP_SCHEMA }))",
            ],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )

    result = subprocess.run(
        [node, "tools.js", "--city", "Seoul"],
        cwd=NODE_DIR,
        env=client_env(suite),
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    check_tools_output(result.stdout, schemas["weather"], schemas["trip"])


CLI_SUMMARY = re.compile(
    r"model=\S+ deployment=\S+ cache=miss tokens in=[1-9]\d* out=[1-9]\d* "
    r"cost=\$\d+\.\d{6} \([1-9]\d* micros\) request_id=req_\w+"
)
TRIP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "destination": {"type": "string"},
        "nights": {"type": "integer", "minimum": 1, "maximum": 30},
        "packing_list": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
    "required": ["destination", "nights", "packing_list"],
    "additionalProperties": False,
}


def run_cli(
    suite: Suite, state_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    # A state dir of its own: no dev key or recorded TLS from the working copy.
    env = {**client_env(suite), "TOLLGATE_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "ask", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_cli_ask_streams_the_answer_then_the_summary(
    suite: Suite, tmp_path: Path
) -> None:
    result = run_cli(
        suite,
        tmp_path,
        "--stream",
        "--instructions",
        "Answer in one line.",
        "Stream me an answer from the CLI",
    )

    assert result.returncode == 0, result.stderr
    answer, summary = result.stdout.split("\n\n")
    assert answer.startswith('Simulated answer to "Stream me an answer')
    assert CLI_SUMMARY.fullmatch(summary.rstrip("\n")), summary


def test_cli_ask_json_schema_prints_valid_pretty_json(
    suite: Suite, tmp_path: Path
) -> None:
    schema_file = tmp_path / "trip plan.json"
    schema_file.write_text(json.dumps(TRIP_SCHEMA), encoding="utf-8")

    plain = run_cli(
        suite, tmp_path, "--json-schema", str(schema_file), "Plan a trip to Oslo"
    )
    streamed = run_cli(
        suite,
        tmp_path,
        "--stream",
        "--json-schema",
        str(schema_file),
        "Plan a trip to Lima",
    )

    assert plain.returncode == 0, plain.stderr
    answer, summary = plain.stdout.split("\n\n")
    assert answer.startswith("{\n  ")  # pretty-printed
    jsonschema.validate(json.loads(answer), TRIP_SCHEMA)
    assert CLI_SUMMARY.fullmatch(summary.rstrip("\n")), summary
    assert streamed.returncode == 0, streamed.stderr
    answer, summary = streamed.stdout.split("\n\n")
    jsonschema.validate(json.loads(answer), TRIP_SCHEMA)
    assert CLI_SUMMARY.fullmatch(summary.rstrip("\n")), summary
