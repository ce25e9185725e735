"""API keys: the keys file, digests and ``authorization: Bearer`` parsing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydantic
import pytest
import yaml

from services.core.errors import UnauthenticatedError
from services.gateway.auth import ApiKeyEntry, ApiKeyStore, hash_key
from services.gateway.domain import Principal

KEY = "tg-test-key-0001"
OTHER_KEY = "tg-test-key-0002"


def _write_keys(path: Path, keys: object) -> Path:
    path.write_text(yaml.safe_dump({"keys": keys}), encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore.load(
        _write_keys(
            tmp_path / "keys.yaml",
            [
                {
                    "sha256": hash_key(KEY),
                    "tenant_id": "acme",
                    "service": "chat",
                    "user_id": "alice",
                    "user_tier": "paid",
                },
                {"sha256": hash_key(OTHER_KEY), "tenant_id": "globex"},
            ],
        )
    )


def test_hash_key_is_the_hex_sha256_of_the_key() -> None:
    assert hash_key(KEY) == hashlib.sha256(KEY.encode()).hexdigest()
    assert len(hash_key(KEY)) == 64
    assert hash_key(KEY) != hash_key(OTHER_KEY)


def test_a_bearer_key_maps_to_its_principal(store: ApiKeyStore) -> None:
    assert store.authenticate(f"Bearer {KEY}") == Principal(
        tenant_id="acme",
        service="chat",
        user_id="alice",
        user_tier="paid",
        key_id="key_" + hash_key(KEY)[:16],
    )


def test_defaults_fill_service_user_and_tier(store: ApiKeyStore) -> None:
    assert store.authenticate(f"Bearer {OTHER_KEY}") == Principal(
        tenant_id="globex",
        service="default",
        user_id="",
        user_tier="free",
        key_id="key_" + hash_key(OTHER_KEY)[:16],
    )


@pytest.mark.parametrize(
    "value", [f"bearer {KEY}", f"BEARER {KEY}", f"  Bearer {KEY}  ", f"Bearer  {KEY}"]
)
def test_scheme_case_and_surrounding_spaces_do_not_matter(
    store: ApiKeyStore, value: str
) -> None:
    assert store.authenticate(value).tenant_id == "acme"


@pytest.mark.parametrize(
    "value", ["", "   ", "Bearer", "Bearer    ", KEY, f"Basic {KEY}", f"Token {KEY}"]
)
def test_a_missing_key_is_unauthenticated(store: ApiKeyStore, value: str) -> None:
    with pytest.raises(UnauthenticatedError) as raised:
        store.authenticate(value)

    assert raised.value.reason == "API_KEY_MISSING"


@pytest.mark.parametrize("key", ["tg-unknown", KEY.upper(), hash_key(KEY)])
def test_an_unknown_key_is_unauthenticated(store: ApiKeyStore, key: str) -> None:
    with pytest.raises(UnauthenticatedError) as raised:
        store.authenticate(f"Bearer {key}")

    assert raised.value.reason == "API_KEY_INVALID"
    # The message never echoes what was presented.
    assert key not in raised.value.message


def test_an_empty_keys_file_knows_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("", encoding="utf-8")

    with pytest.raises(UnauthenticatedError) as raised:
        ApiKeyStore.load(path).authenticate(f"Bearer {KEY}")

    assert raised.value.reason == "API_KEY_INVALID"


@pytest.mark.parametrize(
    "entry",
    [
        {"sha256": "not-a-digest", "tenant_id": "acme"},
        {"sha256": hash_key(KEY).upper(), "tenant_id": "acme"},
        {"sha256": hash_key(KEY)},
        {"sha256": hash_key(KEY), "tenant_id": ""},
        {"sha256": hash_key(KEY), "tenant_id": "acme", "user_tier": ""},
        {"sha256": hash_key(KEY), "tenant_id": "a" * 129},
        {"sha256": hash_key(KEY), "tenant_id": "acme", "key": KEY},
    ],
)
def test_invalid_entries_fail_loading(tmp_path: Path, entry: dict[str, str]) -> None:
    path = _write_keys(tmp_path / "keys.yaml", [entry])

    with pytest.raises(pydantic.ValidationError):
        ApiKeyStore.load(path)


def test_unknown_top_level_fields_fail_loading(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [], "plaintext": [KEY]}), encoding="utf-8")

    with pytest.raises(pydantic.ValidationError):
        ApiKeyStore.load(path)


def test_entries_are_frozen() -> None:
    entry = ApiKeyEntry(sha256=hash_key(KEY), tenant_id="acme")

    with pytest.raises(pydantic.ValidationError):
        entry.tenant_id = "evil"  # type: ignore[misc]
