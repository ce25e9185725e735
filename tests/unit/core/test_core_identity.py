"""Service identity: tokens, their signer, the settings and the policy's decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from services.core.clock import FakeClock
from services.core.errors import PermissionDeniedError, UnauthenticatedError
from services.core.identity import (
    MAX_TOKEN_LIFETIME_SECONDS,
    SERVICE_TOKEN_HEADER,
    ServiceIdentityConfigError,
    ServiceIdentityPolicy,
    ServiceTokenError,
    ServiceTokenSigner,
    mint_service_token,
    read_token_secret,
    verify_service_token,
)
from services.costs.config import CostsSettings
from services.gateway.config import GatewaySettings
from services.ratelimit.config import RateLimitSettings

SECRET = b"0123456789abcdef0123456789abcdef-unit"
ACQUIRE = "/tollgate.ratelimit.v1.RateLimitService/Acquire"
STATUS = "/tollgate.ratelimit.v1.RateLimitService/GetStatus"


class _Context:
    """The part of a servicer context the policy reads: metadata, no certificate."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def _with_token(token: str) -> _Context:
    return _Context((SERVICE_TOKEN_HEADER, token))


def test_a_token_proves_its_name_until_it_expires() -> None:
    clock = FakeClock()
    expires_at = int(clock.now()) + 300
    token = mint_service_token(SECRET, "gateway", expires_at)

    assert token.startswith("v1:gateway:")
    assert verify_service_token(SECRET, token, clock.now()) == "gateway"
    assert verify_service_token(SECRET, token, expires_at - 0.5) == "gateway"
    with pytest.raises(ServiceTokenError) as expired:
        verify_service_token(SECRET, token, expires_at)
    assert expired.value.reason == "SERVICE_TOKEN_EXPIRED"


def test_names_with_colons_survive_the_token_format() -> None:
    name = "spiffe://tollgate/ns/prod/sa/gateway"
    token = mint_service_token(SECRET, name, 2_000_000_000)
    assert verify_service_token(SECRET, token, 1_999_999_999) == name


@pytest.mark.parametrize(
    "token",
    [
        # Signed with another secret.
        mint_service_token(b"another secret of thirty-two bytes!", "gateway", 10_300),
        # The name swapped after signing.
        mint_service_token(SECRET, "client", 10_300).replace("client", "gateway"),
        # The expiry pushed after signing.
        mint_service_token(SECRET, "gateway", 10_300).replace("10300", "10301"),
        "v1:gateway:10300",
        "v2:gateway:10300:00",
        "v1:gateway:soon:00",
        "v1::10300:00",
        "v1:gate way:10300:00",
        "",
    ],
)
def test_forged_or_malformed_tokens_prove_nothing(token: str) -> None:
    with pytest.raises(ServiceTokenError) as refused:
        verify_service_token(SECRET, token, 10_000)
    assert refused.value.reason == "SERVICE_TOKEN_INVALID"


def test_a_token_expiring_beyond_the_longest_lifetime_is_refused() -> None:
    now = 10_000
    token = mint_service_token(SECRET, "gateway", now + 3601)
    with pytest.raises(ServiceTokenError, match="too far ahead"):
        verify_service_token(SECRET, token, now)
    longest = mint_service_token(SECRET, "gateway", now + 3600)
    assert verify_service_token(SECRET, longest, now) == "gateway"


def test_the_signer_reuses_a_token_for_half_its_life_then_mints_a_fresh_one() -> None:
    clock = FakeClock()
    signer = ServiceTokenSigner(SECRET, "gateway", clock, lifetime_seconds=300)

    first = signer.token()
    clock.advance(149)
    assert signer.token() == first
    clock.advance(2)
    second = signer.token()

    assert second != first
    assert verify_service_token(SECRET, second, clock.now() + 298) == "gateway"
    assert signer.metadata() == ((SERVICE_TOKEN_HEADER, second),)


def test_the_signer_refuses_lifetimes_the_services_would_refuse() -> None:
    with pytest.raises(ValueError, match="lifetime"):
        ServiceTokenSigner(SECRET, "gateway", lifetime_seconds=3601)
    assert MAX_TOKEN_LIFETIME_SECONDS == 3600


def test_the_secret_comes_from_the_setting_or_its_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")

    assert read_token_secret(None, None) is None
    assert read_token_secret(SecretStr(SECRET.decode()), None) == SECRET
    assert read_token_secret(None, path) == SECRET
    with pytest.raises(ServiceIdentityConfigError, match="not both"):
        read_token_secret(SecretStr(SECRET.decode()), path)
    with pytest.raises(ServiceIdentityConfigError, match="shorter than 32"):
        read_token_secret(SecretStr("short"), None)
    with pytest.raises(ServiceIdentityConfigError, match="cannot read"):
        read_token_secret(None, tmp_path / "missing")


def test_identity_is_required_once_mutual_tls_or_a_secret_is_configured(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    open_settings = RateLimitSettings()
    mutual = RateLimitSettings(
        tls_cert_file=tmp_path / "c.pem",
        tls_key_file=tmp_path / "k.pem",
        tls_client_ca_file=ca,
    )
    tokens = CostsSettings(service_token_secret=SecretStr(SECRET.decode()))

    assert not open_settings.identity_policy().required
    assert mutual.identity_policy().required
    assert mutual.identity_policy().trust_certificates
    assert tokens.identity_policy().required
    assert not tokens.identity_policy().trust_certificates


def test_settings_refuse_lists_that_could_never_match() -> None:
    with pytest.raises(ValidationError, match="not an identity name"):
        RateLimitSettings(allowed_clients=["the gateway"])
    with pytest.raises(ValidationError, match="not an RPC name"):
        RateLimitSettings(allowed_clients_by_rpc={"Acquire now": ["gateway"]})
    with pytest.raises(ValidationError, match="is empty"):
        RateLimitSettings(allowed_clients_by_rpc={"Acquire": []})
    with pytest.raises(ValidationError):
        RateLimitSettings(allowed_clients=[])
    with pytest.raises(ValidationError, match="exclusive"):
        GatewaySettings(
            ratelimit_address="r:1",
            cache_address="c:1",
            router_address="o:1",
            costs_address="s:1",
            keys_file=Path("keys.yaml"),
            service_token_secret=SecretStr(SECRET.decode()),
            service_token_secret_file=Path("secret"),
        )


def test_the_settings_read_json_lists_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLLGATE_RATELIMIT_ALLOWED_CLIENTS", '["gateway", "envoy"]')
    monkeypatch.setenv(
        "TOLLGATE_RATELIMIT_ALLOWED_CLIENTS_BY_RPC", '{"ShouldRateLimit": ["envoy"]}'
    )
    policy = RateLimitSettings().identity_policy()

    assert policy.allowed_clients == {"gateway", "envoy"}
    assert policy.allowed_for(
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
    ) == {"envoy"}


def test_an_rpc_of_its_own_replaces_the_default_list() -> None:
    policy = ServiceIdentityPolicy.build(
        mutual_tls=False,
        token_secret=SECRET,
        allowed_by_rpc={"GetStatus": ["ops"], ACQUIRE: ["gateway", "batcher"]},
    )

    assert policy.allowed_for(STATUS) == {"ops"}
    assert policy.allowed_for(ACQUIRE) == {"gateway", "batcher"}
    assert policy.allowed_for("/tollgate.ratelimit.v1.RateLimitService/Reconcile") == {
        "gateway"
    }


def test_the_policy_admits_allowed_tokens_and_refuses_the_rest() -> None:
    clock = FakeClock()
    policy = ServiceIdentityPolicy.build(
        mutual_tls=False,
        token_secret=SECRET,
        allowed_by_rpc={"GetStatus": ["*"]},
        clock=clock,
    )
    later = int(clock.now()) + 60
    gateway = _with_token(mint_service_token(SECRET, "gateway", later))
    client = _with_token(mint_service_token(SECRET, "client", later))

    assert policy.check(gateway, ACQUIRE) == "gateway"
    assert policy.check(client, STATUS) == "client"  # "*": any proven identity
    with pytest.raises(PermissionDeniedError) as denied:
        policy.check(client, ACQUIRE)
    assert denied.value.reason == "SERVICE_IDENTITY_NOT_ALLOWED"
    with pytest.raises(UnauthenticatedError) as missing:
        policy.check(_Context(), STATUS)
    assert missing.value.reason == "SERVICE_IDENTITY_MISSING"
    clock.advance(60)
    with pytest.raises(UnauthenticatedError) as expired:
        policy.check(gateway, ACQUIRE)
    assert expired.value.reason == "SERVICE_TOKEN_EXPIRED"


def test_a_token_at_a_service_without_a_secret_is_refused_not_ignored() -> None:
    policy = ServiceIdentityPolicy.build(mutual_tls=True, token_secret=None)
    token = _with_token(mint_service_token(SECRET, "gateway", 2_000_000_000))

    with pytest.raises(UnauthenticatedError) as refused:
        policy.check(token, ACQUIRE)
    assert refused.value.reason == "SERVICE_TOKEN_INVALID"


def test_an_open_policy_admits_anyone() -> None:
    policy = ServiceIdentityPolicy.build(mutual_tls=False, token_secret=None)
    assert not policy.required
    assert policy.check(_Context(), ACQUIRE) is None
