"""A development CA and certificates for running the suite with mutual TLS.

``tollgate certs --out DIR`` and ``tollgate dev --tls`` call :func:`ensure_dev_certs`.
It writes, into one directory:

- ``ca.pem`` / ``ca-key.pem``: a self-signed CA (ECDSA P-256);
- ``<service>.pem`` / ``<service>-key.pem`` for each service: a server certificate
  naming ``localhost``, ``127.0.0.1``, ``::1``, the service's own name (its host name
  in docker-compose) and any extra names given, usable as a client certificate too,
  so the gateway presents ``gateway.pem`` to the services it calls;
- ``client.pem`` / ``client-key.pem``: a client certificate for applications,
  ``tollgate ask`` and grpcurl.

For development only: the CA key sits beside the certificates. Needs the
``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.core.tls import ClientTls

SERVICE_NAMES = ("gateway", "ratelimit", "cache", "router", "costs")
CLIENT_NAME = "client"
# Names every server certificate carries, so clients on the same machine can check
# the host they dialled.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
# Certificates are reissued when they have less than this left.
_RENEW_MARGIN = datetime.timedelta(days=7)


@dataclass(frozen=True)
class DevCerts:
    """Where the files of a development CA live (see the module docstring)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate that clients and servers trust."""
        return self.directory / "ca.pem"

    def cert_file(self, name: str) -> Path:
        """The certificate of a service, or of ``client``."""
        return self.directory / f"{name}.pem"

    def key_file(self, name: str) -> Path:
        """The private key of :meth:`cert_file`."""
        return self.directory / f"{name}-key.pem"

    def client_tls(self, name: str = CLIENT_NAME) -> ClientTls:
        """Mutual TLS as ``name`` (the application client by default)."""
        return ClientTls(self.ca_file, self.cert_file(name), self.key_file(name))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tollgate development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start: the key is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    now: datetime.datetime,
    days: int,
    alt_names: Sequence[str] = (),
    server: bool = False,
) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            builder.add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    issuer_key.public_key()
                ),
                critical=False,
            )
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_alt_name(n) for n in alt_names]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_dev_certs(
    directory: Path,
    services: Iterable[str] = SERVICE_NAMES,
    *,
    extra_names: Sequence[str] = (),
    days: int = 365,
    now: datetime.datetime | None = None,
) -> DevCerts:
    """Write a fresh CA, a certificate per service and a client certificate.

    Args:
        directory: created if missing; existing files of the same names are replaced.
        services: one server certificate per name; the name is also one of its DNS
            names.
        extra_names: further DNS names or IP addresses for every server certificate
            (a host name in a cluster, a machine's address).
        days: validity of every certificate.
        now: the issue time (default: the current time).
    """
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    certs = DevCerts(directory)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Tollgate development CA", ca_key, None, ca_key, now=now, days=days)
    _write_key(directory / "ca-key.pem", ca_key)
    _write_cert(certs.ca_file, ca)
    leaves = [(name, True) for name in services] + [(CLIENT_NAME, False)]
    for name, server in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        # A client's name is its identity; RFC 5280 verifiers want it in a SAN too.
        alt_names = (
            list(dict.fromkeys([*LOCAL_NAMES, name, *extra_names]))
            if server
            else [name]
        )
        cert = _issue(
            f"tollgate-{name}",
            key,
            ca,
            ca_key,
            now=now,
            days=days,
            alt_names=alt_names,
            server=server,
        )
        _write_key(certs.key_file(name), key)
        _write_cert(certs.cert_file(name), cert)
    return certs


def ensure_dev_certs(
    directory: Path,
    services: Iterable[str] = SERVICE_NAMES,
    *,
    now: datetime.datetime | None = None,
) -> DevCerts:
    """Reuse the certificates in ``directory``, or make new ones.

    All are made afresh when a file is missing or a certificate expires within a
    week, so clients keep trusting the same CA between runs of ``tollgate dev``.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    names = [*services, CLIENT_NAME]
    certs = DevCerts(directory)
    files = [certs.ca_file, *(certs.cert_file(n) for n in names)]
    files += [certs.key_file(n) for n in names]
    if all(path.is_file() for path in files):
        soonest = min(
            x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
            for path in files
            if not path.name.endswith("-key.pem")
        )
        if soonest - now > _RENEW_MARGIN:
            return certs
    return make_dev_certs(directory, services, now=now)
