"""TLS settings and files: plaintext, TLS, mutual TLS, and what fails at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from services.core.settings import ServerSettings
from services.core.tls import ClientTls, ServerTls, TlsConfigError, server_tls
from services.devcerts import DevCerts, make_dev_certs
from services.gateway.config import GatewaySettings


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"), ["ratelimit", "cache"])


def test_no_tls_settings_mean_plaintext() -> None:
    assert server_tls(ServerSettings()) is None


def test_cert_and_key_make_tls_and_a_client_ca_makes_it_mutual(
    certs: DevCerts,
) -> None:
    cert, key = certs.cert_file("cache"), certs.key_file("cache")
    one_way = server_tls(ServerSettings(tls_cert_file=cert, tls_key_file=key))
    mutual = server_tls(
        ServerSettings(
            tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=certs.ca_file
        )
    )

    assert one_way == ServerTls(certs.cert_file("cache"), certs.key_file("cache"))
    assert one_way is not None and not one_way.mutual
    assert mutual is not None and mutual.mutual


def test_tls_settings_are_read_from_the_service_environment(
    certs: DevCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_GATEWAY_TLS_CERT_FILE", str(certs.cert_file("cache")))
    monkeypatch.setenv("TOLLGATE_GATEWAY_TLS_KEY_FILE", str(certs.key_file("cache")))
    monkeypatch.setenv("TOLLGATE_GATEWAY_TLS_CLIENT_CA_FILE", str(certs.ca_file))
    settings = GatewaySettings(
        ratelimit_address="r:1",
        cache_address="c:1",
        router_address="o:1",
        costs_address="s:1",
        keys_file=Path("keys.yaml"),
    )
    tls = server_tls(settings)
    assert tls is not None
    assert tls.mutual
    assert tls.cert_file == certs.cert_file("cache")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_cert_file": "c.pem"}, "set together"),
        ({"tls_key_file": "k.pem"}, "set together"),
        ({"tls_client_ca_file": "ca.pem"}, "needs tls_cert_file"),
    ],
)
def test_incomplete_tls_settings_fail_at_start_up(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ServerSettings(**fields)  # type: ignore[arg-type]


def test_missing_file_is_named(certs: DevCerts, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TlsConfigError, match=r"nowhere\.pem"):
        ServerTls(missing, certs.key_file("cache")).credentials()
    with pytest.raises(TlsConfigError, match=r"CA file .*nowhere\.pem"):
        ServerTls(
            certs.cert_file("cache"), certs.key_file("cache"), missing
        ).credentials()


def test_a_file_that_is_not_pem_is_refused(certs: DevCerts, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(TlsConfigError, match=r"junk\.pem"):
        ServerTls(junk, certs.key_file("cache")).credentials()
    with pytest.raises(TlsConfigError, match="no usable PEM certificate"):
        ClientTls(junk).credentials()


def test_a_key_of_another_certificate_is_refused(certs: DevCerts) -> None:
    tls = ServerTls(certs.cert_file("cache"), certs.key_file("ratelimit"))
    with pytest.raises(TlsConfigError, match=r"ratelimit-key\.pem"):
        tls.credentials()


def test_an_encrypted_key_is_refused_without_asking_for_a_password(
    certs: DevCerts, tmp_path: Path
) -> None:
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsConfigError, match="unencrypted"):
        ServerTls(certs.cert_file("cache"), encrypted).credentials()


def test_client_tls_loads_with_and_without_a_client_certificate(
    certs: DevCerts,
) -> None:
    assert ClientTls(certs.ca_file).credentials() is not None
    assert certs.client_tls().credentials() is not None


def test_client_certificate_and_key_go_together(certs: DevCerts) -> None:
    with pytest.raises(TlsConfigError, match="go together"):
        ClientTls(certs.ca_file, cert_file=certs.cert_file("client"))


def test_server_name_override_becomes_a_channel_option(certs: DevCerts) -> None:
    assert ClientTls(certs.ca_file).options() == []
    assert ClientTls(certs.ca_file, server_name="cache").options() == [
        ("grpc.ssl_target_name_override", "cache")
    ]


def _gateway(**fields: object) -> GatewaySettings:
    return GatewaySettings(
        ratelimit_address="r:1",
        cache_address="c:1",
        router_address="o:1",
        costs_address="s:1",
        keys_file=Path("keys.yaml"),
        **fields,  # type: ignore[arg-type]
    )


def test_gateway_downstreams_are_plaintext_unless_a_ca_is_set(
    certs: DevCerts,
) -> None:
    assert _gateway().downstream_tls() is None
    tls = _gateway(
        downstream_tls_ca_file=certs.ca_file,
        downstream_tls_cert_file=certs.cert_file("client"),
        downstream_tls_key_file=certs.key_file("client"),
        downstream_tls_server_name="tollgate-internal",
    ).downstream_tls()
    assert tls == ClientTls(
        certs.ca_file,
        certs.cert_file("client"),
        certs.key_file("client"),
        "tollgate-internal",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"downstream_tls_cert_file": "c.pem"}, "set together"),
        (
            {"downstream_tls_cert_file": "c.pem", "downstream_tls_key_file": "k.pem"},
            "need downstream_tls_ca_file",
        ),
        ({"downstream_tls_server_name": "internal"}, "need downstream_tls_ca_file"),
    ],
)
def test_incomplete_gateway_downstream_tls_fails_at_start_up(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _gateway(**fields)
