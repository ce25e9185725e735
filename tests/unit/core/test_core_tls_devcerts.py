"""The development CA: certificates that verify for the names clients dial."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from services import cli
from services.devcerts import (
    SERVICE_NAMES,
    DevCerts,
    ensure_dev_certs,
    make_dev_certs,
)

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(
        tmp_path_factory.mktemp("certs"), extra_names=["tollgate.internal"], now=NOW
    )


@pytest.mark.parametrize("service", SERVICE_NAMES)
@pytest.mark.parametrize(
    "dialled",
    [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
        x509.DNSName("tollgate.internal"),
    ],
)
def test_every_service_certificate_verifies_for_local_and_extra_names(
    certs: DevCerts, service: str, dialled: x509.DNSName | x509.IPAddress
) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store([_cert(certs.ca_file)]))
        .time(NOW)
        .build_server_verifier(dialled)
    )
    verifier.verify(_cert(certs.cert_file(service)), [])


def test_a_service_certificate_names_its_service_and_not_another(
    certs: DevCerts,
) -> None:
    store = Store([_cert(certs.ca_file)])
    own = PolicyBuilder().store(store).time(NOW)
    own.build_server_verifier(x509.DNSName("cache")).verify(
        _cert(certs.cert_file("cache")), []
    )
    with pytest.raises(x509.verification.VerificationError):
        own.build_server_verifier(x509.DNSName("router")).verify(
            _cert(certs.cert_file("cache")), []
        )


def test_service_certificates_serve_and_act_as_clients_the_client_only_as_client(
    certs: DevCerts,
) -> None:
    def usages(name: str) -> set[x509.ObjectIdentifier]:
        cert = _cert(certs.cert_file(name))
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    assert usages("gateway") == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    assert usages("client") == {ExtendedKeyUsageOID.CLIENT_AUTH}
    verifier = (
        PolicyBuilder()
        .store(Store([_cert(certs.ca_file)]))
        .time(NOW)
        .build_client_verifier()
    )
    verifier.verify(_cert(certs.cert_file("client")), [])


def test_keys_are_readable_by_their_owner_only(certs: DevCerts) -> None:
    keys = sorted(certs.directory.glob("*-key.pem"))
    assert [k.name for k in keys] == sorted(
        f"{n}-key.pem" for n in ["ca", "client", *SERVICE_NAMES]
    )
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_certificates_are_valid_for_the_days_asked(tmp_path: Path) -> None:
    made = make_dev_certs(tmp_path, ["cache"], days=30, now=NOW)
    cert = _cert(made.cert_file("cache"))
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=30)
    assert cert.not_valid_before_utc <= NOW


def test_ensure_reuses_the_ca_until_a_week_before_expiry(tmp_path: Path) -> None:
    first = ensure_dev_certs(tmp_path, ["cache"], now=NOW)
    ca = first.ca_file.read_bytes()

    assert ensure_dev_certs(tmp_path, ["cache"], now=NOW).ca_file.read_bytes() == ca
    near_expiry = NOW + datetime.timedelta(days=365 - 6)
    renewed = ensure_dev_certs(tmp_path, ["cache"], now=near_expiry)
    assert renewed.ca_file.read_bytes() != ca


def test_ensure_makes_all_afresh_when_a_file_is_missing(tmp_path: Path) -> None:
    first = ensure_dev_certs(tmp_path, ["cache", "router"], now=NOW)
    ca = first.ca_file.read_bytes()
    first.key_file("router").unlink()

    again = ensure_dev_certs(tmp_path, ["cache", "router"], now=NOW)
    assert again.key_file("router").is_file()
    assert again.ca_file.read_bytes() != ca


def test_tollgate_certs_writes_the_names_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    args = ["certs", "--out", str(out), "--service", "edge", "--name", "10.0.0.7"]

    assert cli.main([*args, "--days", "30"]) == 0

    assert sorted(p.name for p in out.glob("*.pem")) == [
        "ca-key.pem",
        "ca.pem",
        "client-key.pem",
        "client.pem",
        "edge-key.pem",
        "edge.pem",
    ]
    names = (
        _cert(out / "edge.pem")
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert x509.DNSName("edge") in names
    assert x509.IPAddress(ipaddress.ip_address("10.0.0.7")) in names
    assert str(out) in capsys.readouterr().out
