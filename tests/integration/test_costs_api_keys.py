"""The API key column of the ledger, on SQLite and on Postgres.

An existing ledger (schema version 3, before keys were booked) is migrated in
place: its entries keep their amounts under the empty key id, and new entries carry
theirs, for a key's own report and the budget status GetUsage shows.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.core.clock import FakeClock
from services.core.pricing import TokenUsage, load_pricing
from services.costs.adapters.postgres import POSTGRES, open_postgres_store
from services.costs.adapters.sql import Connection, Dialect, _migrate
from services.costs.adapters.sqlite import SQLITE, _connect, open_sqlite_store
from services.costs.domain import Caller, CostLedger, UsageRecord
from services.costs.ports import (
    Budget,
    BudgetPeriod,
    BudgetScope,
    CacheStatus,
    ScopeKind,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's default start
KEYED = Caller("acme", "chat", "u1", api_key_id="key_a")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite path or a Postgres DSN (its own schema, dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "costs.sqlite3")
        return
    import psycopg

    base_dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{base_dsn} options='-csearch_path={schema}'"
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _is_postgres(database: str) -> bool:
    return "search_path" in database


def _create_version_3_with_one_entry(database: str) -> None:
    """A ledger as released before keys were booked, holding one entry."""
    dialect: Dialect = POSTGRES if _is_postgres(database) else SQLITE
    connection: Connection
    if _is_postgres(database):
        import psycopg

        connection = psycopg.connect(database, autocommit=True)
    else:
        connection = _connect(database)
    try:
        _migrate(
            connection, dataclasses.replace(dialect, migrations=dialect.migrations[:3])
        )
        connection.execute(
            dialect.sql(
                "INSERT INTO ledger_entries (request_id, tenant_id, service, user_id, "
                "model, requested_model, deployment, input_tokens, "
                "cached_input_tokens, output_tokens, batch, cache_status, cost_micros, "
                "cache_saved_micros, routing_saved_micros, batch_saved_micros, "
                "currency_code, occurred_at_us, day) VALUES "
                "('old', 'acme', 'chat', 'u1', 'gpt-4.1', '', 'blue', 1000, 0, 500, 0, "
                "'miss', 6000, 0, 0, 0, 'USD', ?, '2026-01-01')"
            ),
            (int(START.timestamp()) * 1_000_000,),
        )
    finally:
        connection.close()


async def test_an_old_ledger_is_migrated_and_books_keys_from_then_on(
    database: str,
) -> None:
    _create_version_3_with_one_entry(database)
    store = (
        await open_postgres_store(database, pool_size=1)
        if _is_postgres(database)
        else await open_sqlite_store(database)
    )
    ledger = CostLedger(store, load_pricing(), FakeClock(), ZoneInfo("UTC"))
    try:
        await ledger.record(
            UsageRecord(
                request_id="new",
                caller=KEYED,
                model="gpt-4.1",
                requested_model="",
                deployment="blue",
                usage=TokenUsage(1000, 0, 1000),
                batch=False,
                cache_status=CacheStatus.MISS,
                occurred_at=START,
            )
        )
        await ledger.set_budget(
            Budget(
                BudgetScope(ScopeKind.USER, "acme", user_id="u1"),
                BudgetPeriod.DAY,
                100_000,
                True,
                (),
                "",
            )
        )
        end = START + timedelta(seconds=1)
        everyone = await ledger.report("", None, end)
        key_a = await ledger.report("acme", None, end, api_key_id="key_a")
        budgets = await ledger.budget_status(KEYED)
    finally:
        await ledger.close()
        await store.close()

    assert [(line.key, line.cost_micros) for line in everyone.summary.by_api_key] == [
        ("", 6000),
        ("key_a", 10000),
    ]
    assert (key_a.summary.requests, key_a.summary.cost_micros) == (1, 10000)
    assert [(b.budget.scope.kind, b.spent_micros) for b in budgets] == [
        (ScopeKind.USER, 16000)
    ]
