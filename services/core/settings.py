"""Settings shared by every service.

Each service has one frozen pydantic-settings class with env prefix
``TOLLGATE_<SVC>_`` that extends :class:`ServerSettings`. Settings are loaded once in
``__main__`` and passed down; nothing else reads the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.clock import Clock
from services.core.identity import (
    DEFAULT_ALLOWED_CLIENTS,
    ServiceIdentityPolicy,
    read_token_secret,
    valid_identity_name,
)

# An RPC's method name (Acquire) or its full path (/pkg.Service/Acquire).
_RPC = re.compile(r"^(/[A-Za-z_][\w.]*/)?[A-Za-z_]\w*$")


class ServerSettings(BaseSettings):
    """Where and how a service's gRPC server listens."""

    # A prefix of its own so a bare ServerSettings never reads generic names (PORT).
    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_SERVER_", frozen=True, extra="ignore"
    )

    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; 0.0.0.0 in containers.",
    )
    port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    grace_seconds: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM: seconds NOT_SERVING is announced and in-flight RPCs "
        "may finish before the server stops.",
    )
    log_level: str = Field(default="INFO", description="Minimum log level.")
    reuse_port: bool = Field(
        default=False,
        description="Share the gRPC, health and HTTP ports with other processes "
        "(SO_REUSEPORT). Set by `--workers` for its workers; off, a port another "
        "process holds fails start-up.",
    )
    admin_key_sha256s: list[str] = Field(
        default_factory=list,
        description="SHA-256 hex digests of the keys allowed to call this service's "
        "admin RPCs (JSON list). Empty: admin RPCs are refused.",
    )
    health_check_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often component health checks run.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="HTTP port of the Prometheus endpoint (GET /metrics) on `host`; "
        "0 picks a free port; unset: no endpoint. `tollgate dev` uses the gRPC port "
        "plus 1000 (51051..51055). With `--workers N`, worker i serves its own on "
        "this port plus i. `tollgate serve all` serves one, on the gateway's port "
        "(one process: every service's series); the others' are not used.",
    )
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Plaintext port on `host` serving only grpc.health.v1, for "
        "probes that cannot present TLS certificates (the kubelet's gRPC probe); "
        "0 picks a free port; unset: health only on the main port.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="OTLP/gRPC collector to export traces to (http:// plaintext, "
        "https:// TLS), e.g. http://otel-collector:4317; unset: tracing off.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain to serve TLS with; unset: plaintext. "
        "Needs tls_key_file.",
    )
    tls_key_file: Path | None = Field(
        default=None,
        description="PEM private key (unencrypted) of tls_cert_file.",
    )
    tls_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle of the clients; when set, every client must "
        "present a certificate signed by it (mutual TLS). Needs tls_cert_file.",
    )

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file are set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file"
            )
        return self


class InternalServerSettings(ServerSettings):
    """A service only the gateway calls: ratelimit, cache, router and costs.

    Its data RPCs require a service identity (services.core.identity) whenever a
    client CA (mutual TLS) or a service token secret is configured.
    """

    allowed_clients: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_CLIENTS),
        min_length=1,
        description="Service identities allowed to call this service's data RPCs "
        "(JSON list): a name in the client certificate (common name or subject "
        "alternative name) under mutual TLS, or the name in a service token; `*` "
        "admits any proven identity. Checked whenever tls_client_ca_file or a "
        "service token secret is set. Health, reflection and the admin RPCs (admin "
        "key) are not data RPCs.",
    )
    allowed_clients_by_rpc: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per RPC, the identities allowed instead of allowed_clients "
        "(JSON object; keys are method names such as `ShouldRateLimit` or full "
        'paths), e.g. `{"ShouldRateLimit": ["envoy"]}` for an Envoy that may ask '
        "ShouldRateLimit and nothing else.",
    )
    service_token_secret: SecretStr | None = Field(
        default=None,
        description="Secret (at least 32 bytes) the service tokens of callers are "
        "checked with (HMAC-SHA256, header x-tollgate-service-token), shared with "
        "the gateway's service_token_secret; setting it makes identity required. "
        "For where TLS ends before the service. Never logged.",
    )
    service_token_secret_file: Path | None = Field(
        default=None,
        description="File holding service_token_secret instead (surrounding "
        "whitespace ignored), e.g. a mounted Secret; not both.",
    )

    @model_validator(mode="after")
    def _identity_settings_are_sound(self) -> Self:
        names = [
            *self.allowed_clients,
            *(name for names in self.allowed_clients_by_rpc.values() for name in names),
        ]
        for name in names:
            if not valid_identity_name(name):
                raise ValueError(
                    f"allowed client {name!r} is not an identity name (printable "
                    "ASCII, no spaces)"
                )
        for rpc, allowed in self.allowed_clients_by_rpc.items():
            if not _RPC.match(rpc):
                raise ValueError(
                    f"allowed_clients_by_rpc key {rpc!r} is not an RPC name "
                    "(Acquire) or full path (/pkg.Service/Acquire)"
                )
            if not allowed:
                raise ValueError(f"allowed_clients_by_rpc[{rpc!r}] is empty")
        if (
            self.service_token_secret is not None
            and self.service_token_secret_file is not None
        ):
            raise ValueError(
                "service_token_secret and service_token_secret_file are exclusive"
            )
        return self

    def identity_policy(self, clock: Clock | None = None) -> ServiceIdentityPolicy:
        """The service identity policy these settings describe.

        Raises:
            ServiceIdentityConfigError: the token secret is too short, or its file
                cannot be read.
        """
        return ServiceIdentityPolicy.build(
            mutual_tls=self.tls_client_ca_file is not None,
            token_secret=read_token_secret(
                self.service_token_secret, self.service_token_secret_file
            ),
            allowed_clients=self.allowed_clients,
            allowed_by_rpc=self.allowed_clients_by_rpc,
            clock=clock,
        )
