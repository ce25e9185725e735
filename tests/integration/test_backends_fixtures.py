from __future__ import annotations

import psycopg
import pytest
import redis.asyncio as redis

from tests.backends import RedisServer

pytestmark = pytest.mark.integration


async def test_redis_fixture_is_a_private_server(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping()
        await client.set("tollgate:fixture", "1")
        assert await client.get("tollgate:fixture") == b"1"
    finally:
        await client.delete("tollgate:fixture")
        await client.aclose()


def test_postgres_fixture_is_a_fresh_database(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
