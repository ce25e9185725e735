"""TLS and mutual TLS for the gRPC servers and the channels between services.

Everything is plaintext unless configured. A server given a certificate and its key
serves TLS; given a client CA as well, it requires every client to present a
certificate signed by that CA (mutual TLS) and refuses the handshake otherwise. A
client verifies the server against a CA file and, for mutual TLS, presents its own
certificate and key.

Files are checked when they are loaded (at start-up) with the standard library's
``ssl`` module, so a wrong path, a file that is not PEM, an encrypted key or a key that
does not match its certificate stops the process with a message naming the file,
instead of gRPC's opaque "failed to bind".
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from services.core.settings import ServerSettings

_log = structlog.get_logger("tollgate.tls")


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, not PEM, or does not fit its pair."""


def _no_password() -> bytes:
    # gRPC cannot use encrypted keys; answering the prompt with nothing makes ssl
    # fail at once instead of asking on the terminal.
    return b""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TlsConfigError(f"cannot read the {what} {path}: {error}") from error


def _load_pair(cert_file: Path, key_file: Path) -> tuple[bytes, bytes]:
    """Read a certificate chain and its key, checking they are PEM and match."""
    cert, key = _read(cert_file, "certificate"), _read(key_file, "private key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert_file, key_file, password=_no_password
        )
    except ssl.SSLError as error:
        raise TlsConfigError(
            f"cannot use certificate {cert_file} with key {key_file} (PEM, "
            f"unencrypted, and the key of that certificate?): {error}"
        ) from error
    return cert, key


def _load_ca(ca_file: Path) -> bytes:
    """Read a PEM bundle of CA certificates."""
    ca = _read(ca_file, "CA file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
    except ssl.SSLError as error:
        raise TlsConfigError(
            f"the CA file {ca_file} holds no usable PEM certificate: {error}"
        ) from error
    return ca


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key, plus the CA of its clients for mutual TLS.

    Attributes:
        cert_file: PEM certificate chain the server presents.
        key_file: PEM private key of that certificate (unencrypted).
        client_ca_file: PEM CA bundle; when set, clients must present a
            certificate signed by it.
    """

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate."""
        return self.client_ca_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        """Load and check the files; the gRPC server credentials they make."""
        cert, key = _load_pair(self.cert_file, self.key_file)
        client_ca = (
            None if self.client_ca_file is None else _load_ca(self.client_ca_file)
        )
        return grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=client_ca,
            require_client_auth=self.mutual,
        )


def server_tls(settings: ServerSettings) -> ServerTls | None:
    """The server's TLS configuration, or None to serve plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return ServerTls(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )


def add_port(server: grpc.aio.Server, address: str, settings: ServerSettings) -> int:
    """Bind ``address`` with TLS when ``settings`` configure it, else plaintext.

    Returns:
        The bound port (0 when gRPC could not bind).
    """
    tls = server_tls(settings)
    if tls is None:
        return int(server.add_insecure_port(address))
    port = int(server.add_secure_port(address, tls.credentials()))
    _log.info("tls_enabled", mutual=tls.mutual, cert_file=str(tls.cert_file))
    return port


@dataclass(frozen=True)
class ClientTls:
    """How a client verifies a server and, for mutual TLS, proves who it is.

    Attributes:
        ca_file: PEM CA bundle the server's certificate must chain to.
        cert_file: PEM certificate the client presents (mutual TLS), or None.
        key_file: PEM private key of ``cert_file``.
        server_name: name checked against the server's certificate instead of the
            host in the address (for addresses the certificate does not name).
    """

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise TlsConfigError("a client certificate and its key go together")

    def credentials(self) -> grpc.ChannelCredentials:
        """Load and check the files; the gRPC channel credentials they make."""
        ca = _load_ca(self.ca_file)
        if self.cert_file is None or self.key_file is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        cert, key = _load_pair(self.cert_file, self.key_file)
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def options(self) -> list[tuple[str, Any]]:
        """Channel options: the server-name override when one is set."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def aio_channel(
    address: str,
    tls: ClientTls | None,
    *,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to ``address``: TLS when ``tls`` is given, else plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(
            address, options=list(options), interceptors=interceptors
        )
    return grpc.aio.secure_channel(
        address,
        tls.credentials(),
        options=[*options, *tls.options()],
        interceptors=interceptors,
    )


def sync_channel(
    address: str, tls: ClientTls | None, *, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A blocking channel to ``address``: TLS when ``tls`` is given, else plaintext."""
    if tls is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(
        address, tls.credentials(), options=[*options, *tls.options()]
    )
