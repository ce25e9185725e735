"""Settings shared by every service.

Each service has one frozen pydantic-settings class with env prefix
``TOLLGATE_<SVC>_`` that extends :class:`ServerSettings`. Settings are loaded once in
``__main__`` and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        "plus 1000 (51051..51055).",
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
