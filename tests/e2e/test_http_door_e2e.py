"""The HTTP door of a suite started like `tollgate dev`: both doors, one pipeline.

The gRPC door and the OpenAI-compatible HTTP door answer the same request with
the same text, usage and cost; the official `openai` npm package runs its tests
(`npm run test:http` in examples/node) against the HTTP door.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import grpc
import openai
import pytest
import yaml
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.devsuite import DEV_TENANT, Suite
from tests.e2e.conftest import E2E_KEY, start_test_suite
from tests.e2e.test_clients_e2e import NODE_DIR, client_env, node, tap_counts

pytestmark = pytest.mark.e2e

__all__ = ["node"]  # the fixture, shared with the gRPC clients' test
NODE_BURST_USER = "node-burst"
NODE_TESTS = 4


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    state_dir = tmp_path_factory.mktemp("http-door")
    limits = state_dir / "limits.yaml"
    limits.write_text(
        yaml.safe_dump({"users": {f"{DEV_TENANT}:{NODE_BURST_USER}": {"rpm": 1}}}),
        encoding="utf-8",
    )
    running = start_test_suite(
        state_dir, extra_env={"TOLLGATE_RATELIMIT_LIMITS_FILE": str(limits)}
    )
    yield running
    running.stop()


# A fixed model: the doors are compared, not routing, which a cold router (loading
# its embedding model on the first `auto` request) may answer by the local route.
DOORS_MODEL = "gpt-4.1-mini"


def test_grpc_and_http_doors_answer_alike(suite: Suite) -> None:
    question = f"How does a circuit breaker recover? ({uuid.uuid4()})"
    with grpc.insecure_channel(suite.gateway_address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        over_grpc = stub.CreateResponse(
            gateway_pb.CreateResponseRequest(
                input=question, model=DOORS_MODEL, cache_bypass=True
            ),
            metadata=(("authorization", f"Bearer {E2E_KEY}"),),
            timeout=30,
        )
    bypass = {"x-tollgate-cache": "bypass"}
    with openai.OpenAI(base_url=suite.http_base_url, api_key=E2E_KEY) as client:
        responses = client.responses.with_raw_response.create(
            model=DOORS_MODEL, input=question, extra_headers=bypass
        )
        chat = client.chat.completions.with_raw_response.create(
            model=DOORS_MODEL,
            messages=[{"role": "user", "content": question}],
            extra_headers=bypass,
        )
    response, completion = responses.parse(), chat.parse()
    assert response.output_text == over_grpc.output_text
    assert completion.choices[0].message.content == over_grpc.output_text
    assert response.usage is not None
    assert completion.usage is not None
    assert response.usage.input_tokens == over_grpc.usage.input_tokens
    assert response.usage.output_tokens == over_grpc.usage.output_tokens
    assert completion.usage.prompt_tokens == over_grpc.usage.input_tokens
    assert completion.usage.completion_tokens == over_grpc.usage.output_tokens
    assert response.model == completion.model == over_grpc.model
    assert int(responses.headers["x-tollgate-cost-micros"]) == over_grpc.cost_micros
    assert int(chat.headers["x-tollgate-cost-micros"]) == over_grpc.cost_micros
    assert responses.headers["x-tollgate-deployment"] == over_grpc.deployment


def test_the_openai_npm_package_works_through_the_http_door(
    node: str, suite: Suite
) -> None:
    env = {**client_env(suite), "TOLLGATE_HTTP_BASE_URL": suite.http_base_url}
    result = subprocess.run(
        [node, "--test", "openai-http.js"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = tap_counts(result.stdout)
    assert counts["fail"] == 0, output
    assert counts["skipped"] == 0, output
    assert counts["pass"] == counts["tests"] == NODE_TESTS, output
