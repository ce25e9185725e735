"""The SQLite key store and the key service's index, with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.clock import FakeClock
from services.core.errors import UnauthenticatedError
from services.gateway.adapters.key_store import SqlKeyStore, open_sqlite_key_store
from services.gateway.auth import ApiKeyStore
from services.gateway.keys import KeyIdTakenError, KeyRecord, KeyService, NewKey


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "gateway-keys.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SqlKeyStore]:
    opened = open_sqlite_key_store(path)
    yield opened
    opened.close()


def _record(key_id: str, digest: str) -> KeyRecord:
    return KeyRecord(
        key_id=key_id,
        digest=digest,
        tenant_id="acme",
        service="chat",
        user_id="",
        user_tier="free",
        models=("auto",),
        created_at=100.0,
    )


async def test_a_poll_reads_only_what_changed_since_the_last(
    store: SqlKeyStore,
) -> None:
    first = await store.insert(_record("tk_a", "a" * 64))
    second = await store.insert(_record("tk_b", "b" * 64))

    version, everything = await store.changes(0)
    unchanged = await store.changes(version)
    revoked = await store.revoke("tk_a", 200.0)
    after_revoke = await store.changes(version)

    assert [r.key_id for r in everything] == ["tk_a", "tk_b"]
    assert (first.version, second.version, version) == (1, 2, 2)
    assert unchanged == (2, [])
    assert revoked is not None and revoked.revoked_at == 200.0
    assert after_revoke == (3, [revoked])
    assert everything[0].models == ("auto",)


async def test_ids_and_digests_are_unique(store: SqlKeyStore) -> None:
    await store.insert(_record("tk_a", "a" * 64))

    with pytest.raises(KeyIdTakenError):
        await store.insert(_record("tk_a", "c" * 64))
    with pytest.raises(KeyIdTakenError):
        await store.insert(_record("tk_c", "a" * 64))
    assert (await store.changes(0))[0] == 1  # the failed writes left no trace


async def test_rotation_keeps_the_old_digest_and_skips_revoked_keys(
    store: SqlKeyStore,
) -> None:
    await store.insert(_record("tk_a", "a" * 64))

    rotated = await store.rotate("tk_a", "d" * 64, 300.0, 360.0)
    await store.revoke("tk_a", 400.0)
    after_revoke = await store.rotate("tk_a", "e" * 64, 500.0, 500.0)
    unknown = await store.rotate("tk_zz", "f" * 64, 500.0, 500.0)

    assert rotated is not None
    assert (rotated.digest, rotated.previous_digest) == ("d" * 64, "a" * 64)
    assert (rotated.rotated_at, rotated.previous_valid_until) == (300.0, 360.0)
    assert after_revoke is not None and after_revoke.digest == "d" * 64
    assert unknown is None


async def test_keys_survive_a_reopen(path: Path) -> None:
    first = open_sqlite_key_store(path)
    service = KeyService(first, ApiKeyStore([]), FakeClock())
    record, secret = await service.create(NewKey(tenant_id="acme", ttl_seconds=60))
    first.close()

    reopened = open_sqlite_key_store(path)
    clock = FakeClock()
    fresh = KeyService(reopened, ApiKeyStore([]), clock)
    await fresh.refresh()
    principal = fresh.authenticate(f"Bearer {secret}")
    clock.advance(60)
    with pytest.raises(UnauthenticatedError) as expired:
        fresh.authenticate(f"Bearer {secret}")
    reopened.close()

    assert (principal.key_id, principal.tenant_id, principal.service) == (
        record.key_id,
        "acme",
        "default",
    )
    assert expired.value.reason == "API_KEY_EXPIRED"


async def test_a_replica_sees_another_replicas_writes_on_refresh(
    path: Path,
) -> None:
    store_a, store_b = open_sqlite_key_store(path), open_sqlite_key_store(path)
    replica_a = KeyService(store_a, ApiKeyStore([]), FakeClock())
    replica_b = KeyService(store_b, ApiKeyStore([]), FakeClock())
    record, secret = await replica_a.create(NewKey(tenant_id="acme"))

    with pytest.raises(UnauthenticatedError) as before:
        replica_b.authenticate(f"Bearer {secret}")
    made = await replica_b.refresh()
    known = replica_b.authenticate(f"Bearer {secret}")
    idle = await replica_b.refresh()
    await replica_a.revoke(record.key_id)
    revoked = await replica_b.refresh()
    with pytest.raises(UnauthenticatedError) as after:
        replica_b.authenticate(f"Bearer {secret}")
    store_a.close()
    store_b.close()

    assert before.value.reason == "API_KEY_INVALID"
    assert (made, idle, revoked) == (1, 0, 1)
    assert known.key_id == record.key_id
    assert after.value.reason == "API_KEY_REVOKED"
