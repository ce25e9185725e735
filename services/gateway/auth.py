"""API keys, stored as SHA-256 hashes.

The keys file is YAML::

    keys:
      - sha256: "<hex digest of the key>"
        tenant_id: acme
        service: chat
        user_id: ""        # optional: the key's own end user
        user_tier: paid    # optional: default "free"
        models: [auto, gpt-4.1-mini]   # optional: the models it may name; default any

The plaintext key never touches disk or logs; lookups compare digests.

The file is the seed: keys made at run time live in the key store
(:mod:`services.gateway.keys`), which authenticates both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field

from services.core.errors import UnauthenticatedError
from services.gateway.domain import Principal


class ApiKeyEntry(BaseModel):
    """One key in the keys file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex digest of the key.")
    tenant_id: str = Field(min_length=1, max_length=128)
    service: str = Field(default="default", min_length=1, max_length=128)
    user_id: str = Field(default="", max_length=128)
    user_tier: str = Field(default="free", min_length=1, max_length=64)
    models: tuple[str, ...] = Field(
        default=(),
        description="The models this key may name ('auto' for the router's "
        "choice); empty: any model. Others are refused with PERMISSION_DENIED "
        "(HTTP 403).",
    )


class KeysFile(BaseModel):
    """The whole keys file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[ApiKeyEntry] = Field(default_factory=list)


def hash_key(key: str) -> str:
    """The hex SHA-256 digest under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(digest: str) -> str:
    """The public id of a keys-file key: ``key_`` and 16 hex digits of its digest.

    Stable across restarts and replicas, and safe to show and log: a prefix of a
    SHA-256 digest reveals nothing usable about the key.
    """
    return "key_" + digest[:16]


class Authenticator(Protocol):
    """What the doors authenticate callers with."""

    def authenticate(self, authorization: str) -> Principal:
        """The principal of an ``authorization: Bearer <key>`` value.

        Raises:
            UnauthenticatedError: no key, or one that may not be used.
        """
        ...


class ApiKeyStore:
    """Maps presented keys to principals."""

    def __init__(self, entries: list[ApiKeyEntry]) -> None:
        self.entries = tuple(entries)
        self._by_digest = {
            entry.sha256: Principal(
                tenant_id=entry.tenant_id,
                service=entry.service,
                user_id=entry.user_id,
                user_tier=entry.user_tier,
                allowed_models=entry.models,
                key_id=key_id_of(entry.sha256),
            )
            for entry in entries
        }

    @classmethod
    def load(cls, path: Path) -> ApiKeyStore:
        """Read and validate a keys file."""
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(KeysFile.model_validate(data).keys)

    def principal_of(self, digest: str) -> Principal | None:
        """The principal of the key whose hex SHA-256 digest is ``digest``."""
        return self._by_digest.get(digest)

    def authenticate(self, authorization: str) -> Principal:
        """The principal of an ``authorization: Bearer <key>`` value."""
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise UnauthenticatedError(
                "missing API key: send 'authorization: Bearer <key>' metadata",
                reason="API_KEY_MISSING",
            )
        # A dict lookup on the digest is safe: timing can only reveal something about
        # a SHA-256 digest, which says nothing about the key.
        principal = self._by_digest.get(hash_key(key.strip()))
        if principal is None:
            raise UnauthenticatedError("unknown API key", reason="API_KEY_INVALID")
        return principal
