"""Two gateway servers sharing one Postgres batch store, in front of one simulator.

A batch submitted through one gateway is fetched, listed and cancelled through the
other, and both batch loops run it upstream once; a file uploaded to one's HTTP
door makes a batch through the other's.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import openai
import pytest
import yaml
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.app import GatewayApp
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key
from services.gateway.config import GatewaySettings
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.conftest import ServeApp

pytestmark = pytest.mark.integration

API_KEY = "tg-replicas-test-key"
OTHER_TENANT_KEY = "tg-replicas-other-tenant-key"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
MODEL = "gpt-4.1-mini"  # explicit: no router needed to choose one
WAIT_SECONDS = 30.0


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    """A Postgres schema the gateways create; dropped after the test."""
    import psycopg

    name = f"gw_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    settings = SimulatorSettings(port=0, latency_ms=0, batch_completion_seconds=1.0)
    async with await start_simulator(settings) as simulator:
        yield simulator


@dataclass
class Pair:
    """Two gateways on one store, and the simulator behind them."""

    one: gateway_pb2_grpc.GatewayServiceStub
    two: gateway_pb2_grpc.GatewayServiceStub
    sim: RunningSimulator
    http_urls: list[str]

    def client(self, index: int, key: str = API_KEY) -> openai.AsyncOpenAI:
        """An OpenAI SDK on gateway ``index``'s HTTP door."""
        return openai.AsyncOpenAI(
            base_url=self.http_urls[index], api_key=key, max_retries=0
        )


@pytest.fixture
async def pair(
    # The schema first: it is dropped after serve_app stopped the gateways.
    schema: str,
    postgres_dsn: str,
    serve_app: ServeApp,
    sim: RunningSimulator,
    tmp_path: Path,
) -> AsyncIterator[Pair]:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {"sha256": hash_key(API_KEY), "tenant_id": "acme"},
                    {"sha256": hash_key(OTHER_TENANT_KEY), "tenant_id": "globex"},
                ]
            }
        ),
        encoding="utf-8",
    )
    costs = await serve_app(
        await build_costs(
            CostsSettings(port=0, database_path=tmp_path / "costs.sqlite3")
        )
    )
    unused = _unused_address()  # the batch lane calls no other downstream
    addresses, http_urls = [], []
    for name in ("one", "two"):
        settings = GatewaySettings(
            port=0,
            http_port=0,
            ratelimit_address=unused,
            cache_address=unused,
            router_address=unused,
            costs_address=costs.address,
            keys_file=keys,
            openai_base_url=sim.base_url,
            outbox_path=tmp_path / name / "outbox.sqlite3",
            batch_store_path=tmp_path / name / "unused.sqlite3",
            http_files_dir=tmp_path / name / "unused-files",
            postgres_dsn=postgres_dsn,
            postgres_schema=schema,
            batch_tick_seconds=0.05,
            batch_poll_initial_seconds=0.05,
            batch_poll_max_seconds=0.2,
        )
        running = await serve_app(await build_gateway(settings))
        assert isinstance(running.app, GatewayApp)
        addresses.append(running.address)
        http_urls.append(f"http://127.0.0.1:{running.app.http_port}/v1")
    async with (
        grpc.aio.insecure_channel(addresses[0]) as first,
        grpc.aio.insecure_channel(addresses[1]) as second,
    ):
        yield Pair(
            gateway_pb2_grpc.GatewayServiceStub(first),
            gateway_pb2_grpc.GatewayServiceStub(second),
            sim,
            http_urls,
        )
    # Nothing went to the gateways' own files.
    assert not (tmp_path / "one" / "unused.sqlite3").exists()
    assert not (tmp_path / "two" / "unused.sqlite3").exists()
    assert not (tmp_path / "one" / "unused-files").exists()
    assert not (tmp_path / "two" / "unused-files").exists()


async def _get(
    gateway: gateway_pb2_grpc.GatewayServiceStub, batch_id: str
) -> gateway_pb.Batch:
    reply: gateway_pb.GetBatchResponse = await gateway.GetBatch(
        gateway_pb.GetBatchRequest(batch_id=batch_id), metadata=AUTH
    )
    return reply.batch


async def _wait_for(
    gateway: gateway_pb2_grpc.GatewayServiceStub, batch_id: str, status: int
) -> gateway_pb.Batch:
    deadline = time.monotonic() + WAIT_SECONDS
    while (batch := await _get(gateway, batch_id)).status != status:
        assert time.monotonic() < deadline, f"batch stayed {batch.status}"
        await asyncio.sleep(0.05)
    return batch


def _submit(count: int, prefix: str = "item") -> gateway_pb.SubmitBatchRequest:
    return gateway_pb.SubmitBatchRequest(
        items=[
            gateway_pb.BatchItem(custom_id=f"{prefix}-{n}", input=f"q{n}", model=MODEL)
            for n in range(count)
        ]
    )


async def test_a_batch_submitted_to_one_gateway_is_served_by_the_other(
    pair: Pair,
) -> None:
    submitted = await pair.one.SubmitBatch(_submit(3), metadata=AUTH)
    batch_id = submitted.batch.batch_id
    seen = await _get(pair.two, batch_id)
    assert (seen.batch_id, seen.total_items) == (batch_id, 3)

    done = await _wait_for(pair.two, batch_id, gateway_pb.BATCH_STATUS_COMPLETED)
    assert done.completed_items == 3
    # Both loops ran, yet the batch went upstream once.
    assert len(pair.sim.state.batches) == 1
    for gateway in (pair.two, pair.one):
        results = [
            r
            async for r in gateway.ListBatchResults(
                gateway_pb.ListBatchResultsRequest(batch_id=batch_id), metadata=AUTH
            )
        ]
        assert [r.custom_id for r in results] == ["item-0", "item-1", "item-2"]
        assert all(r.output_text and not r.HasField("error") for r in results)
    # Booked once, at the batch price, whichever replica booked it.
    settled = await _wait_for(pair.one, batch_id, gateway_pb.BATCH_STATUS_COMPLETED)
    assert settled.cost_micros == sum(r.cost_micros for r in results) > 0


async def test_a_batch_submitted_to_one_gateway_is_cancelled_by_the_other(
    pair: Pair,
) -> None:
    submitted = await pair.one.SubmitBatch(_submit(2, "doomed"), metadata=AUTH)
    batch_id = submitted.batch.batch_id

    reply = await pair.two.CancelBatch(
        gateway_pb.CancelBatchRequest(batch_id=batch_id), metadata=AUTH
    )
    assert reply.batch.status in (
        gateway_pb.BATCH_STATUS_CANCELLING,
        gateway_pb.BATCH_STATUS_CANCELLED,
    )
    done = await _wait_for(pair.one, batch_id, gateway_pb.BATCH_STATUS_CANCELLED)
    assert done.total_items == 2
    # Whatever reached the upstream was cancelled there.
    for upstream in pair.sim.state.batches.values():
        assert upstream.cancelling_at is not None

    # Cancelling it again, on either gateway, is no error.
    again = await pair.one.CancelBatch(
        gateway_pb.CancelBatchRequest(batch_id=batch_id), metadata=AUTH
    )
    assert again.batch.status == gateway_pb.BATCH_STATUS_CANCELLED


async def test_a_file_uploaded_to_one_door_makes_a_batch_through_the_other(
    pair: Pair,
) -> None:
    lines = [
        {
            "custom_id": f"line-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Question {n}?"}],
            },
        }
        for n in range(3)
    ]
    content = "\n".join(json.dumps(line) for line in lines).encode()
    async with pair.client(0) as one, pair.client(1) as two:
        uploaded = await one.files.create(
            file=("batch.jsonl", content), purpose="batch"
        )
        assert (await two.files.retrieve(uploaded.id)).bytes == len(content)
        assert (await two.files.content(uploaded.id)).content == content
        batch = await two.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        assert batch.request_counts is not None
        assert batch.request_counts.total == 3
        deadline = time.monotonic() + WAIT_SECONDS
        while batch.status != "completed":
            assert time.monotonic() < deadline, batch.status
            await asyncio.sleep(0.05)
            batch = await one.batches.retrieve(batch.id)
        assert batch.output_file_id
        output = await two.files.content(batch.output_file_id)
    answered = [json.loads(line)["custom_id"] for line in output.text.splitlines()]
    assert sorted(answered) == ["line-0", "line-1", "line-2"]
    async with pair.client(1, OTHER_TENANT_KEY) as other:
        with pytest.raises(openai.NotFoundError):
            await other.files.retrieve(uploaded.id)
