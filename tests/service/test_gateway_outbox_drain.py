"""A stopping gateway hands its outbox to the ledger before it exits."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import yaml

from services.core.server import start_server
from services.costs.app import build_app as build_costs
from services.costs.config import CostsSettings
from services.gateway.adapters.outbox import SqliteOutbox
from services.gateway.app import build_app as build_gateway
from services.gateway.auth import hash_key
from services.gateway.config import GatewaySettings
from services.gateway.domain import CacheStatus, Principal, Usage, UsageRecord
from tests.conftest import ServeApp

# 2026-01-01T00:00:00Z, inside the packaged pricing table's validity.
OCCURRED_AT = 1_767_225_600.0


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _record(request_id: str) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        principal=Principal("acme", "chat", "alice", "paid"),
        model="gpt-4.1-mini",
        requested_model="gpt-4.1-mini",
        deployment="gpt-4.1-mini",
        usage=Usage(100, 0, 50),
        cache_status=CacheStatus.MISS,
        occurred_at=OCCURRED_AT,
    )


async def _left_over(outbox_path: Path, *request_ids: str) -> None:
    """Records a previous run could not hand to the ledger."""
    outbox = SqliteOutbox(outbox_path)
    try:
        for request_id in request_ids:
            await outbox.put(_record(request_id))
    finally:
        outbox.close()


async def _run_and_stop(tmp_path: Path, costs_address: str) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump({"keys": [{"sha256": hash_key("tg-k"), "tenant_id": "acme"}]}),
        encoding="utf-8",
    )
    unused = _unused_address()
    settings = GatewaySettings(
        port=0,
        host="127.0.0.1",
        http_port=None,
        ratelimit_address=unused,
        cache_address=unused,
        router_address=unused,
        costs_address=costs_address,
        keys_file=keys,
        outbox_path=tmp_path / "outbox.sqlite3",
        batch_store_path=tmp_path / "batches.sqlite3",
        # The periodic replay never runs during the test: only the drain can.
        outbox_replay_interval_seconds=3600.0,
    )
    server = await start_server(await build_gateway(settings), settings)
    await server.stop(0)


async def test_the_outbox_is_drained_into_the_ledger_on_shutdown(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    costs_db = tmp_path / "costs.sqlite3"
    costs = await serve_app(await build_costs(CostsSettings(database_path=costs_db)))
    await _left_over(tmp_path / "outbox.sqlite3", "req-1", "req-2")

    await _run_and_stop(tmp_path, costs.address)

    outbox = SqliteOutbox(tmp_path / "outbox.sqlite3")
    try:
        assert await outbox.depth() == 0
    finally:
        outbox.close()
    with sqlite3.connect(costs_db) as db:
        booked = db.execute(
            "SELECT request_id, cost_micros FROM ledger_entries ORDER BY request_id"
        ).fetchall()
    # 100 input tokens at 0.4 and 50 output at 1.6 micro-dollars each.
    assert booked == [("req-1", 120), ("req-2", 120)]


async def test_what_the_ledger_cannot_take_at_shutdown_stays_for_the_next_start(
    tmp_path: Path,
) -> None:
    await _left_over(tmp_path / "outbox.sqlite3", "req-1")

    await _run_and_stop(tmp_path, _unused_address())

    outbox = SqliteOutbox(tmp_path / "outbox.sqlite3")
    try:
        assert [r.request_id for _, r in await outbox.pending(10)] == ["req-1"]
    finally:
        outbox.close()
