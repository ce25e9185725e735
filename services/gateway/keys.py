"""API keys as data: made, listed, revoked and rotated at run time.

A key has a public id (``tk_`` and 16 hex digits, shown in lists, logs and usage)
and a secret (``tk_<id digits>_<43 random characters>``) shown once, when it is
made or rotated; the store keeps only the secret's SHA-256 digest. A key carries
the tenant, service, user and tier it stands for, the models it may name, an
optional expiry and an optional monthly budget, which the costs service enforces
under the key's own budget scope.

Every replica authenticates from an in-memory index of the store, refreshed by a
poll of the store's change counter (:meth:`KeyService.refresh`, about every
second): a poll that finds the counter unchanged reads nothing else, and one that
finds it moved reads only the keys written since. So a key made or revoked on one
replica works or is refused on every other within seconds, without a restart; on
the replica that made or revoked it, at once.

The keys file (``TOLLGATE_GATEWAY_KEYS_FILE``) stays the seed: its keys authenticate
as before, are listed with source ``file``, and cannot be revoked or rotated by RPC
(FAILED_PRECONDITION): only their file changes them. They are not imported, so the
file stays the one place that defines them.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from services.core.clock import Clock
from services.core.errors import (
    FailedPreconditionError,
    NotFoundError,
    TollgateError,
    UnauthenticatedError,
)
from services.gateway.auth import ApiKeyStore, hash_key, key_id_of
from services.gateway.domain import Principal

KEY_ID_PREFIX = "tk_"
DEFAULT_SERVICE = "default"
DEFAULT_TIER = "free"
# Making a key retries on the (2^-64) chance of an id already taken.
_CREATE_ATTEMPTS = 3

_log = structlog.get_logger("tollgate.gateway.keys")


class KeySource(enum.Enum):
    """Where a key is defined."""

    STORE = "store"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key, without its secret; times are Unix seconds.

    Attributes:
        digest: hex SHA-256 of the current secret (empty for keys of the file
            when shown).
        previous_digest: hex SHA-256 of the secret before the last rotation; empty
            if never rotated.
        previous_valid_until: until when ``previous_digest`` still authenticates;
            None (or a past time) when it no longer does.
        budget_limit_micros: the key's own hard monthly budget, None for none.
        version: the store's change counter when the key was last written.
    """

    key_id: str
    digest: str
    tenant_id: str
    service: str
    user_id: str
    user_tier: str
    models: tuple[str, ...]
    created_at: float | None
    expires_at: float | None = None
    revoked_at: float | None = None
    rotated_at: float | None = None
    previous_digest: str = ""
    previous_valid_until: float | None = None
    budget_limit_micros: int | None = None
    source: KeySource = KeySource.STORE
    version: int = 0

    def principal(self) -> Principal:
        """Who the key stands for."""
        return Principal(
            tenant_id=self.tenant_id,
            service=self.service,
            user_id=self.user_id,
            user_tier=self.user_tier,
            allowed_models=self.models,
            key_id=self.key_id,
        )


@dataclass(frozen=True, slots=True)
class NewKey:
    """The attributes of a key to make (validated by the front).

    Attributes:
        ttl_seconds: how long the key works from its making; None for ever.
        budget_limit_micros: the key's own hard monthly budget; None for none.
    """

    tenant_id: str
    service: str = DEFAULT_SERVICE
    user_id: str = ""
    user_tier: str = DEFAULT_TIER
    models: tuple[str, ...] = ()
    ttl_seconds: float | None = None
    budget_limit_micros: int | None = None


class KeyIdTakenError(TollgateError):
    """A key with this id (or digest) is stored already."""

    default_reason = "KEY_ID_TAKEN"


class KeyStore(Protocol):
    """Durable keys shared by every replica, with a change counter.

    Every write bumps the counter in its own transaction and stamps the rows it
    writes with the new value, so ``changes(since)`` returns everything written
    after ``since``. Calls raise ``BackendUnavailableError`` when the store cannot
    be reached.
    """

    async def insert(self, record: KeyRecord) -> KeyRecord:
        """Store a new key; the stored record (with its version) is returned.

        Raises:
            KeyIdTakenError: the key id or digest is stored already.
        """
        ...

    async def get(self, key_id: str) -> KeyRecord | None:
        """The key, or None."""
        ...

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        """Mark the key revoked at ``at`` unless it is; the key as stored, or None."""
        ...

    async def rotate(
        self, key_id: str, digest: str, at: float, previous_valid_until: float
    ) -> KeyRecord | None:
        """Give an unrevoked key a new digest, keeping the old one as previous.

        Returns:
            The key as stored afterwards (still revoked and unchanged if it was
            revoked), or None for an unknown key.
        """
        ...

    async def changes(self, since: int) -> tuple[int, list[KeyRecord]]:
        """The counter now, and the keys written after ``since`` (none if equal)."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


class KeyBudgets(Protocol):
    """Sets the budget of a key's own scope (the costs service)."""

    async def set_key_budget(
        self, tenant_id: str, key_id: str, limit_micros: int
    ) -> None:
        """Create or replace the key's hard monthly budget.

        Raises:
            FailedPreconditionError: budgets cannot be set from here.
            UnavailableError: the costs service cannot set it now.
        """
        ...


def new_key_id() -> str:
    """A fresh public key id: ``tk_`` and 16 hex digits."""
    return KEY_ID_PREFIX + secrets.token_hex(8)


def new_secret(key_id: str) -> str:
    """A fresh secret for ``key_id``: its id's digits and 256 random bits.

    The id inside tells an operator which key a leaked secret is; it is no part of
    the secret's strength.
    """
    return f"{key_id}_{secrets.token_urlsafe(32)}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _presented_key(authorization: str) -> str:
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UnauthenticatedError(
            "missing API key: send 'authorization: Bearer <key>' metadata",
            reason="API_KEY_MISSING",
        )
    return key.strip()


class KeyService:
    """Authenticates callers and manages the stored keys.

    Authentication is a dict lookup on the presented key's digest in memory: the
    keys file's keys, then the store's index (kept fresh by :meth:`refresh`).
    """

    def __init__(
        self,
        store: KeyStore,
        file_keys: ApiKeyStore,
        clock: Clock,
        budgets: KeyBudgets | None = None,
    ) -> None:
        self._store = store
        self._file_keys = file_keys
        self._clock = clock
        self._budgets = budgets
        self._file_records = {
            key_id_of(entry.sha256): KeyRecord(
                key_id=key_id_of(entry.sha256),
                digest="",
                tenant_id=entry.tenant_id,
                service=entry.service,
                user_id=entry.user_id,
                user_tier=entry.user_tier,
                models=entry.models,
                created_at=None,
                source=KeySource.FILE,
            )
            for entry in file_keys.entries
        }
        self._version = 0
        self._by_id: dict[str, tuple[KeyRecord, Principal]] = {}
        # Current and previous digests, each to its key's id.
        self._by_digest: dict[str, str] = {}

    def now(self) -> float:
        """The service's clock now (Unix seconds)."""
        return self._clock.now()

    # -- the index ------------------------------------------------------------

    def _apply(self, records: Sequence[KeyRecord]) -> None:
        for record in records:
            known = self._by_id.get(record.key_id)
            if known is not None and known[0].version > record.version:
                continue  # an older read than what this replica already applied
            if known is not None:
                for digest in (known[0].digest, known[0].previous_digest):
                    if self._by_digest.get(digest) == record.key_id:
                        del self._by_digest[digest]
            self._by_id[record.key_id] = (record, record.principal())
            self._by_digest[record.digest] = record.key_id
            if record.previous_digest:
                self._by_digest[record.previous_digest] = record.key_id

    async def refresh(self) -> int:
        """Apply what the store changed since the last refresh; how many keys.

        Raises:
            BackendUnavailableError: the store cannot be read (the index stays as
                it was).
        """
        version, records = await self._store.changes(self._version)
        self._apply(records)
        self._version = max(version, self._version)
        return len(records)

    # -- authentication -------------------------------------------------------

    def authenticate(self, authorization: str) -> Principal:
        """The principal of an ``authorization: Bearer <key>`` value.

        Raises:
            UnauthenticatedError: no key, an unknown key (API_KEY_INVALID), or a
                stored key that is revoked (API_KEY_REVOKED), expired
                (API_KEY_EXPIRED), or a secret replaced by a rotation
                (API_KEY_ROTATED).
        """
        key = _presented_key(authorization)
        digest = hash_key(key)
        principal = self._file_keys.principal_of(digest)
        if principal is not None:
            return principal
        key_id = self._by_digest.get(digest)
        if key_id is None:
            raise UnauthenticatedError("unknown API key", reason="API_KEY_INVALID")
        record, principal = self._by_id[key_id]
        now = self._clock.now()
        metadata = {"keyId": record.key_id}
        if record.revoked_at is not None:
            raise UnauthenticatedError(
                f"API key {record.key_id} was revoked at {_iso(record.revoked_at)}",
                reason="API_KEY_REVOKED",
                metadata=metadata,
            )
        if record.expires_at is not None and now >= record.expires_at:
            raise UnauthenticatedError(
                f"API key {record.key_id} expired at {_iso(record.expires_at)}",
                reason="API_KEY_EXPIRED",
                metadata=metadata,
            )
        if digest != record.digest and (
            record.previous_valid_until is None or now >= record.previous_valid_until
        ):
            raise UnauthenticatedError(
                f"this secret of API key {record.key_id} was replaced by a rotation; "
                "use the new one",
                reason="API_KEY_ROTATED",
                metadata=metadata,
            )
        return principal

    # -- administration -------------------------------------------------------

    async def create(self, spec: NewKey) -> tuple[KeyRecord, str]:
        """Make a key; returns it and its secret (which is not kept).

        With a budget, the budget is set first: if it cannot be, no key is made.
        """
        now = self._clock.now()
        for _ in range(_CREATE_ATTEMPTS):
            key_id = new_key_id()
            # A 64-bit id is as good as unique; still, never set the budget of a key
            # somebody already has.
            if await self._store.get(key_id) is not None:
                continue
            if spec.budget_limit_micros is not None:
                if self._budgets is None:
                    raise FailedPreconditionError(
                        "per-key budgets need the gateway's costs_admin_key",
                        reason="KEY_BUDGETS_UNCONFIGURED",
                    )
                await self._budgets.set_key_budget(
                    spec.tenant_id, key_id, spec.budget_limit_micros
                )
            secret = new_secret(key_id)
            record = KeyRecord(
                key_id=key_id,
                digest=hash_key(secret),
                tenant_id=spec.tenant_id,
                service=spec.service,
                user_id=spec.user_id,
                user_tier=spec.user_tier,
                models=spec.models,
                created_at=now,
                expires_at=None if spec.ttl_seconds is None else now + spec.ttl_seconds,
                budget_limit_micros=spec.budget_limit_micros,
            )
            try:
                stored = await self._store.insert(record)
            except KeyIdTakenError:
                continue
            self._apply([stored])
            _log.info(
                "api_key_created",
                key_id=key_id,
                tenant=spec.tenant_id,
                expires=stored.expires_at is not None,
                budget=stored.budget_limit_micros is not None,
            )
            return stored, secret
        raise KeyIdTakenError("no free key id was found; try again")

    async def list(
        self, tenant_id: str = "", include_revoked: bool = False
    ) -> list[KeyRecord]:
        """The keys of the file, then the stored ones by making time.

        The index is refreshed first, so a key made on another replica a moment
        ago is listed.
        """
        await self.refresh()
        listed = [
            record
            for record in self._file_records.values()
            if not tenant_id or record.tenant_id == tenant_id
        ]
        stored = sorted(
            (
                record
                for record, _ in self._by_id.values()
                if (not tenant_id or record.tenant_id == tenant_id)
                and (include_revoked or record.revoked_at is None)
            ),
            key=lambda record: (record.created_at or 0.0, record.key_id),
        )
        return listed + stored

    async def _stored(self, key_id: str) -> KeyRecord:
        if key_id in self._file_records:
            raise FailedPreconditionError(
                f"API key {key_id} is defined in the keys file: change the file",
                reason="KEY_FROM_FILE",
                metadata={"keyId": key_id},
            )
        record = await self._store.get(key_id)
        if record is None:
            raise NotFoundError(
                f"no API key {key_id}",
                reason="KEY_NOT_FOUND",
                metadata={"keyId": key_id},
            )
        return record

    async def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a stored key, at once on this replica; a revoked one stays so."""
        await self._stored(key_id)
        record = await self._store.revoke(key_id, self._clock.now())
        if record is None:  # deleted under us: no store deletes, but be exact
            raise NotFoundError(f"no API key {key_id}", reason="KEY_NOT_FOUND")
        self._apply([record])
        _log.info("api_key_revoked", key_id=key_id, tenant=record.tenant_id)
        return record

    async def rotate(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[KeyRecord, str]:
        """Give a stored key a new secret; the old one works ``grace_seconds`` more."""
        current = await self._stored(key_id)
        if current.revoked_at is not None:
            raise FailedPreconditionError(
                f"API key {key_id} is revoked",
                reason="KEY_REVOKED",
                metadata={"keyId": key_id},
            )
        now = self._clock.now()
        secret = new_secret(key_id)
        record = await self._store.rotate(
            key_id, hash_key(secret), now, now + max(grace_seconds, 0.0)
        )
        if record is None:
            raise NotFoundError(f"no API key {key_id}", reason="KEY_NOT_FOUND")
        self._apply([record])
        if record.revoked_at is not None:  # revoked between the read and the write
            raise FailedPreconditionError(
                f"API key {key_id} is revoked",
                reason="KEY_REVOKED",
                metadata={"keyId": key_id},
            )
        _log.info(
            "api_key_rotated",
            key_id=key_id,
            tenant=record.tenant_id,
            grace_seconds=max(grace_seconds, 0.0),
        )
        return record, secret
