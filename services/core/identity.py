"""Service identity: which callers may use an internal service's data RPCs.

ratelimit, cache, router and costs answer the gateway, not applications: whoever can
call their data RPCs can read every tenant's spend (costs ``GetReport``), book usage
(``Record``), spend another user's limit (``Acquire``) or poison a tenant's cache
(``Store``). So every RPC of theirs, except health, reflection and the admin RPCs
(which take an admin key instead), requires the caller to prove a *service
identity* that the RPC's allow-list names. Two proofs are accepted:

- **mutual TLS**: the names in the client certificate (its common name and every
  subject alternative name), as gRPC verified them against the client CA. The
  development certificates of :mod:`services.devcerts` carry the service's name as a
  SAN, so the gateway's certificate proves ``gateway``.
- **a signed service token**, for where TLS ends before the service (a proxy or a
  mesh that does not pass the client certificate on): ``x-tollgate-service-token``
  metadata holding ``v1:<name>:<expiry>:<hmac>``, an HMAC-SHA256 over the name and
  the expiry (Unix seconds) under a secret the gateway and the services share. Tokens
  live minutes; the gateway mints a fresh one when half of the last one's life is
  gone (:class:`ServiceTokenSigner`).

The check is required whenever the service is configured for one of the proofs
(a client CA for mutual TLS, or a token secret); otherwise the service is open, which
only plain ``tollgate dev`` on loopback does, and the service logs a warning saying
so at start-up. See docs/tls.md ("Service identity").
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr

from services.core.clock import Clock, SystemClock
from services.core.context import metadata_value
from services.core.errors import PermissionDeniedError, UnauthenticatedError

_log = structlog.get_logger("tollgate.identity")

SERVICE_TOKEN_HEADER = "x-tollgate-service-token"
"""Metadata key of the signed service token."""
TOKEN_VERSION = "v1"
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0
"""How long the tokens the gateway mints are valid."""
MAX_TOKEN_LIFETIME_SECONDS = 3600.0
"""A token whose expiry lies further ahead than this is refused: a leaked token is
worth an hour at most, whoever minted it."""
MIN_SECRET_BYTES = 32
"""The shortest token secret accepted (256 bits, the size of the HMAC)."""
ANY_CLIENT = "*"
"""An allow-list entry that admits every caller proving some identity."""
DEFAULT_ALLOWED_CLIENTS = ("gateway",)
# Printable ASCII without spaces: what fits in gRPC metadata and in a certificate name.
_NAME = re.compile(r"^[!-~]{1,253}$")
_MAX_TOKEN_CHARS = 512


class ServiceIdentityConfigError(ValueError):
    """The identity settings cannot work (a short secret, an unreadable file)."""


class ServiceTokenError(Exception):
    """A service token that proves nothing: malformed, forged or expired.

    Attributes:
        reason: ``SERVICE_TOKEN_INVALID`` or ``SERVICE_TOKEN_EXPIRED``.
    """

    def __init__(self, message: str, reason: str = "SERVICE_TOKEN_INVALID") -> None:
        super().__init__(message)
        self.reason = reason


def valid_identity_name(name: str) -> bool:
    """Whether ``name`` can be an identity: 1-253 printable ASCII, no spaces."""
    return bool(_NAME.match(name))


def read_token_secret(
    secret: SecretStr | None, secret_file: Path | None
) -> bytes | None:
    """The token secret from the setting or the file (one of them), or None.

    A file's surrounding whitespace (its trailing newline) is not part of the secret.

    Raises:
        ServiceIdentityConfigError: both are set, the file cannot be read, or the
            secret is shorter than :data:`MIN_SECRET_BYTES`.
    """
    if secret is not None and secret_file is not None:
        raise ServiceIdentityConfigError(
            "set the service token secret or its file, not both"
        )
    if secret is not None:
        value = secret.get_secret_value().strip().encode()
        source = "the service token secret"
    elif secret_file is not None:
        try:
            value = secret_file.read_bytes().strip()
        except OSError as error:
            raise ServiceIdentityConfigError(
                f"cannot read the service token secret file {secret_file}: {error}"
            ) from error
        source = f"the service token secret file {secret_file}"
    else:
        return None
    if len(value) < MIN_SECRET_BYTES:
        raise ServiceIdentityConfigError(
            f"{source} is shorter than {MIN_SECRET_BYTES} bytes: use "
            "`openssl rand -base64 48` or `python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`"
        )
    return value


def _mac(secret: bytes, name: str, expires_at: int) -> str:
    message = f"tollgate-service-token:{TOKEN_VERSION}:{name}:{expires_at}"
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def mint_service_token(secret: bytes, name: str, expires_at: int) -> str:
    """A token proving ``name`` until ``expires_at`` (Unix seconds)."""
    if not valid_identity_name(name):
        raise ValueError(f"not an identity name: {name!r}")
    mac = _mac(secret, name, expires_at)
    return f"{TOKEN_VERSION}:{name}:{expires_at}:{mac}"


def verify_service_token(secret: bytes, token: str, now: float) -> str:
    """The identity ``token`` proves at ``now`` (Unix seconds).

    Raises:
        ServiceTokenError: the token is malformed, its MAC does not match, it has
            expired, or it expires further ahead than the longest lifetime allowed.
    """
    version, _, rest = token.partition(":")
    parts = rest.rsplit(":", 2)
    if (
        len(token) > _MAX_TOKEN_CHARS
        or version != TOKEN_VERSION
        or len(parts) != 3
        or not parts[1].isdigit()
        or not valid_identity_name(parts[0])
    ):
        raise ServiceTokenError(
            f"malformed service token (expected {TOKEN_VERSION}:<name>:<expiry>:<mac>)"
        )
    name, expiry, mac = parts
    expires_at = int(expiry)
    if not hmac.compare_digest(mac, _mac(secret, name, expires_at)):
        raise ServiceTokenError("service token signature does not match")
    if expires_at <= now:
        raise ServiceTokenError("service token expired", reason="SERVICE_TOKEN_EXPIRED")
    if expires_at > now + MAX_TOKEN_LIFETIME_SECONDS:
        raise ServiceTokenError(
            "service token expires too far ahead (more than "
            f"{MAX_TOKEN_LIFETIME_SECONDS:.0f} s)"
        )
    return name


class ServiceTokenSigner:
    """Mints the tokens one client sends, reusing each for half its life.

    Args:
        secret: the secret shared with the services.
        name: the identity the tokens prove (``gateway``).
        clock: wall time for the expiry.
        lifetime_seconds: how long each token is valid; at most
            :data:`MAX_TOKEN_LIFETIME_SECONDS`.
    """

    def __init__(
        self,
        secret: bytes,
        name: str,
        clock: Clock | None = None,
        lifetime_seconds: float = DEFAULT_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        if not 0 < lifetime_seconds <= MAX_TOKEN_LIFETIME_SECONDS:
            raise ValueError("lifetime_seconds must be in (0, 3600]")
        if not valid_identity_name(name):
            raise ValueError(f"not an identity name: {name!r}")
        self._secret = secret
        self._name = name
        self._clock = clock or SystemClock()
        self._lifetime = lifetime_seconds
        self._token = ""
        self._expires_at = 0

    @property
    def name(self) -> str:
        """The identity the tokens prove."""
        return self._name

    def token(self) -> str:
        """A valid token, fresh once more than half of the last one's life is gone."""
        now = self._clock.now()
        if self._expires_at - now < self._lifetime / 2:
            self._expires_at = math.floor(now + self._lifetime)
            self._token = mint_service_token(self._secret, self._name, self._expires_at)
        return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata entry to send with each call."""
        return ((SERVICE_TOKEN_HEADER, self.token()),)


def certificate_names(context: Any) -> tuple[str, ...]:
    """The names of the client certificate gRPC verified: common name, then SANs.

    Empty for a plaintext or one-way TLS connection, and for in-process calls.
    """
    auth_context = getattr(context, "auth_context", None)
    if auth_context is None:
        return ()
    properties: Mapping[str, Sequence[bytes]] = auth_context() or {}
    if b"ssl" not in properties.get("transport_security_type", ()):
        return ()
    names: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in properties.get(key, ()):
            names.append(value.decode("utf-8", "replace"))
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class ServiceIdentityPolicy:
    """Who may call which RPC of one internal service, and what proves it.

    Attributes:
        required: whether data RPCs check identity at all; False leaves the service
            open (plain ``tollgate dev`` on loopback).
        allowed_clients: identities allowed to call every data RPC without an entry
            of its own in ``allowed_by_rpc``; ``*`` admits any proven identity.
        allowed_by_rpc: RPC (its method name, ``Acquire``, or full path,
            ``/tollgate.ratelimit.v1.RateLimitService/Acquire``) to the identities
            allowed to call it, in place of ``allowed_clients``.
        trust_certificates: whether client certificates prove identity (the server
            verifies them against a client CA: mutual TLS).
        token_secret: the secret tokens are checked with; None accepts no token.
        clock: wall time for token expiry.
    """

    required: bool
    allowed_clients: frozenset[str] = frozenset(DEFAULT_ALLOWED_CLIENTS)
    allowed_by_rpc: Mapping[str, frozenset[str]] = field(default_factory=dict)
    trust_certificates: bool = False
    token_secret: bytes | None = field(default=None, repr=False)
    clock: Clock = field(default_factory=SystemClock, repr=False)

    @classmethod
    def build(
        cls,
        *,
        mutual_tls: bool,
        token_secret: bytes | None,
        allowed_clients: Iterable[str] = DEFAULT_ALLOWED_CLIENTS,
        allowed_by_rpc: Mapping[str, Iterable[str]] | None = None,
        clock: Clock | None = None,
    ) -> ServiceIdentityPolicy:
        """A policy that is required as soon as either proof is configured."""
        return cls(
            required=mutual_tls or token_secret is not None,
            allowed_clients=frozenset(allowed_clients),
            allowed_by_rpc={
                rpc: frozenset(names) for rpc, names in (allowed_by_rpc or {}).items()
            },
            trust_certificates=mutual_tls,
            token_secret=token_secret,
            clock=clock or SystemClock(),
        )

    def allowed_for(self, method: str) -> frozenset[str]:
        """The identities allowed to call the full ``method`` path."""
        exact = self.allowed_by_rpc.get(method)
        if exact is not None:
            return exact
        return self.allowed_by_rpc.get(method.rsplit("/", 1)[-1], self.allowed_clients)

    def _proven(self, context: Any) -> list[str]:
        """The identities the caller proves: certificate names, then the token's."""
        names = list(certificate_names(context)) if self.trust_certificates else []
        token = metadata_value(context.invocation_metadata(), SERVICE_TOKEN_HEADER)
        if not token:
            return names
        if self.token_secret is None:
            # A token this service cannot check proves nothing; say so rather than
            # ignore it, so a misconfigured secret is found at once.
            raise UnauthenticatedError(
                "this service accepts no service tokens (no token secret is set)",
                reason="SERVICE_TOKEN_INVALID",
            )
        try:
            text = token.decode("ascii") if isinstance(token, bytes) else token
            names.append(
                verify_service_token(self.token_secret, text, self.clock.now())
            )
        except (ServiceTokenError, UnicodeDecodeError) as error:
            reason = getattr(error, "reason", "SERVICE_TOKEN_INVALID")
            _log.warning("service_token_refused", reason=reason)
            raise UnauthenticatedError(
                f"invalid service token: {error}", reason=reason
            ) from error
        return names

    def check(self, context: Any, method: str) -> str | None:
        """Admit the caller of ``method`` or raise; the identity admitted, if any.

        Raises:
            UnauthenticatedError: the caller proves no identity, or presents a
                token that is malformed, forged or expired.
            PermissionDeniedError: the identities proven are not allowed to call
                ``method``.
        """
        if not self.required:
            return None
        proven = self._proven(context)
        if not proven:
            raise UnauthenticatedError(
                "this RPC needs a service identity: a client certificate of an "
                f"allowed service (mutual TLS) or '{SERVICE_TOKEN_HEADER}' metadata",
                reason="SERVICE_IDENTITY_MISSING",
            )
        allowed = self.allowed_for(method)
        for name in proven:
            if name in allowed or ANY_CLIENT in allowed:
                return name
        _log.warning("service_identity_refused", identities=proven)
        raise PermissionDeniedError(
            "this caller's service identity may not call this RPC",
            reason="SERVICE_IDENTITY_NOT_ALLOWED",
        )

    def log_start(self, service: str, host: str) -> None:
        """Say at start-up what the service requires, loudly when nothing."""
        if not self.required:
            _log.warning(
                "service_identity_off",
                service=service,
                host=host,
                detail="any caller that reaches this port may call its data RPCs; "
                "set a client CA (mutual TLS) or a service token secret",
            )
            return
        _log.info(
            "service_identity_required",
            service=service,
            mutual_tls=self.trust_certificates,
            tokens=self.token_secret is not None,
            allowed_clients=sorted(self.allowed_clients),
            allowed_by_rpc={k: sorted(v) for k, v in self.allowed_by_rpc.items()},
        )
