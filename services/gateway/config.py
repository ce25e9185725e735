"""Gateway settings (env prefix ``TOLLGATE_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.breaker import BreakerConfig
from services.core.clock import Clock
from services.core.identity import ServiceTokenSigner, read_token_secret
from services.core.settings import ServerSettings
from services.core.tls import ClientTls


class GatewaySettings(ServerSettings):
    """Everything the gateway needs to run. Downstream addresses are required."""

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_GATEWAY_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    port: int = Field(default=50051, ge=0, le=65535, description="gRPC port.")
    http_port: int | None = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of the OpenAI-compatible HTTP door (/v1/chat/completions, "
        "/v1/responses, ...) on `host`, served with the same TLS settings as the "
        "gRPC port; 0 picks a free port; unset (null): no HTTP door.",
    )
    http_files_dir: Path = Field(
        default=Path(".tollgate/gateway-files"),
        description="Directory of the files uploaded through the HTTP door "
        "(POST /v1/files, purpose 'batch') until their batch is created. Unused "
        "when postgres_dsn is set.",
    )
    ratelimit_address: str = Field(description="host:port of the ratelimit service.")
    cache_address: str = Field(description="host:port of the cache service.")
    router_address: str = Field(description="host:port of the router service.")
    costs_address: str = Field(
        description="host:port of the costs service. Any of the four addresses may "
        "be a gRPC target naming several replicas (ipv4:10.0.0.1:50055,"
        "10.0.0.2:50055, or a DNS name resolving to each): calls are balanced round "
        "robin and skip a replica that is down."
    )
    keys_file: Path = Field(
        description="YAML file of API keys, stored as SHA-256 hashes with the tenant, "
        "service, user and tier each key stands for."
    )
    key_store_path: Path = Field(
        default=Path(".tollgate/gateway-keys.sqlite3"),
        description="SQLite file of the API keys made with CreateKey (`tollgate keys "
        "create`), beside the keys file's; replicas on one machine may share it. "
        "Unused when postgres_dsn is set: the keys are then in Postgres (tables "
        "api_keys and api_key_changes in postgres_schema).",
    )
    key_refresh_seconds: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="How often each replica polls the key store's change counter "
        "(reading keys only when it moved), so that a key made, revoked or rotated "
        "on another replica takes effect here within this and a poll.",
    )
    costs_admin_key: SecretStr | None = Field(
        default=None,
        description="Admin key of the costs service. With it CreateKey can give a "
        "key its own monthly budget (SetBudget on the key's scope); without it, "
        "CreateKey with a budget answers FAILED_PRECONDITION. Never logged.",
    )
    openai_base_url: str | None = Field(
        default=None,
        description="Upstream base URL (for example the simulator's "
        "http://127.0.0.1:8089/v1); unset means OpenAI itself.",
    )
    openai_api_key: SecretStr = Field(
        default=SecretStr("sk-simulator"),
        description="Upstream API key. Never logged.",
    )
    upstream_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Per-attempt upstream timeout."
    )
    upstream_max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Upstream retries after the first attempt (exponential backoff "
        "with jitter, honouring Retry-After).",
    )
    report_batch_interval_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        description="How long reconciles and routed-call outcomes, sent after the "
        "answer, gather before going to ratelimit and router as one batch; 0 sends "
        "each at once (still one batch call).",
    )
    report_batch_max_items: int = Field(
        default=256,
        ge=1,
        le=1000,
        description="A batch of after-the-answer reports goes at once when it holds "
        "this many.",
    )
    downstream_timeout_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Deadline of each call to ratelimit, cache, router and costs.",
    )
    downstream_tls_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle the downstream services' certificates must chain "
        "to; setting it makes the calls to ratelimit, cache, router and costs TLS. "
        "Unset: plaintext.",
    )
    downstream_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate the gateway presents to the downstream services "
        "(mutual TLS). Needs downstream_tls_key_file and downstream_tls_ca_file.",
    )
    downstream_tls_key_file: Path | None = Field(
        default=None,
        description="PEM private key (unencrypted) of downstream_tls_cert_file.",
    )
    downstream_tls_server_name: str | None = Field(
        default=None,
        description="Name checked against every downstream certificate instead of "
        "the host of its address, for addresses the certificates do not name.",
    )
    service_token_secret: SecretStr | None = Field(
        default=None,
        description="Secret (at least 32 bytes) shared with ratelimit, cache, router "
        "and costs (their service_token_secret): the gateway then sends every call "
        "to them a short-lived signed service token (x-tollgate-service-token) "
        "proving service_identity. For where TLS ends before the services; with "
        "mutual TLS the gateway's certificate proves its identity. Never logged.",
    )
    service_token_secret_file: Path | None = Field(
        default=None,
        description="File holding service_token_secret instead (surrounding "
        "whitespace ignored), e.g. a mounted Secret; not both.",
    )
    service_identity: str = Field(
        default="gateway",
        pattern=r"^[!-~]{1,253}$",
        description="The identity the gateway's service tokens prove; the services "
        "admit it when their allowed_clients name it.",
    )
    downstream_breaker: BreakerConfig = Field(
        default_factory=BreakerConfig,
        description="Circuit breaker thresholds of each downstream service client.",
    )
    upstream_breaker: BreakerConfig = Field(
        default_factory=BreakerConfig,
        description="Circuit breaker thresholds per upstream model.",
    )
    ratelimit_failure_mode: Literal["open", "closed"] = Field(
        default="open",
        description="When ratelimit is unreachable: 'open' admits through a "
        "conservative local limiter, 'closed' refuses with UNAVAILABLE.",
    )
    local_limit_rpm_per_user: int = Field(
        default=10,
        ge=1,
        description="Requests per minute per user admitted by the local limiter "
        "while ratelimit is unreachable.",
    )
    upstream_max_concurrency: int = Field(
        default=64,
        ge=1,
        description="Upstream calls in flight per model; more wait in the priority "
        "queue.",
    )
    queue_max_depth: int = Field(
        default=1024,
        ge=0,
        description="Requests that may wait per model; beyond it RESOURCE_EXHAUSTED "
        "(QUEUE_FULL) at once.",
    )
    queue_aging_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Waiting this long lifts a request one priority level, so low "
        "priorities cannot starve.",
    )
    batch_store_path: Path = Field(
        default=Path(".tollgate/gateway-batches.sqlite3"),
        description="SQLite file of the Batch API lane: batches, tickets and their "
        "results. Unused when postgres_dsn is set.",
    )
    postgres_dsn: SecretStr | None = Field(
        default=None,
        description="libpq connection string or URL of a Postgres database holding "
        "the batches, tickets, their results and the files uploaded through the "
        "HTTP door, in place of batch_store_path and http_files_dir, so that "
        "several gateway replicas share them (each replica's batch loop takes a "
        "lease on a batch before working on it). Needs psycopg (the `costs` "
        "extra). Never logged.",
    )
    postgres_schema: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Postgres schema of the gateway's tables, created if missing; "
        "unset uses the connection's search_path. Lets tests or several suites "
        "share one database.",
    )
    postgres_pool_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Postgres connections (each on its own thread) per replica.",
    )
    batch_poll_initial_seconds: float = Field(
        default=1.0,
        gt=0,
        description="First wait between polls of an upstream batch; doubles each poll.",
    )
    batch_poll_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait between polls of an upstream batch.",
    )
    batch_tick_seconds: float = Field(
        default=0.5, gt=0, description="How often the batch lane looks for work."
    )
    batch_request_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Timeout of each Batch API call (upload, "
        "create, retrieve, download).",
    )
    batch_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a replica's lease on a batch lasts while it works on "
        "it (renewed before each upstream step); a crashed replica's batches wait "
        "this long before another takes them over. At least 3 times "
        "batch_request_timeout_seconds.",
    )
    router_admin_key: SecretStr | None = Field(
        default=None,
        description="Admin key of the router. With it the gateway holds a higher "
        "degradation level on the router while upstream circuits are open (cheaper "
        "model, then static answers), lapsing by itself on recovery. Never logged.",
    )
    auto_degradation_hold_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long each automatic degradation hold lasts; renewed while "
        "the circuits stay open.",
    )
    pricing_file: Path | None = Field(
        default=None,
        description="YAML pricing table for the cost estimate replied while the "
        "ledger is unreachable; unset uses the packaged one. Keep it the ledger's.",
    )
    outbox_path: Path = Field(
        default=Path(".tollgate/gateway-outbox.sqlite3"),
        description="SQLite file of usage records waiting for the ledger.",
    )
    outbox_replay_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the outbox is replayed."
    )
    outbox_drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="On shutdown, how long the gateway keeps replaying the outbox "
        "to the ledger; what is left stays in outbox_path for the next start.",
    )

    @model_validator(mode="after")
    def _leases_outlast_batch_calls(self) -> Self:
        # A lease is renewed between upstream calls, and a step makes up to three.
        if self.batch_lease_seconds < 3 * self.batch_request_timeout_seconds:
            raise ValueError(
                "batch_lease_seconds must be at least 3 times "
                "batch_request_timeout_seconds"
            )
        return self

    @model_validator(mode="after")
    def _downstream_tls_files_go_together(self) -> Self:
        if (self.downstream_tls_cert_file is None) != (
            self.downstream_tls_key_file is None
        ):
            raise ValueError(
                "downstream_tls_cert_file and downstream_tls_key_file are set together"
            )
        if self.downstream_tls_ca_file is None and (
            self.downstream_tls_cert_file is not None
            or self.downstream_tls_server_name is not None
        ):
            raise ValueError(
                "downstream TLS settings need downstream_tls_ca_file, which turns "
                "TLS on"
            )
        return self

    @model_validator(mode="after")
    def _one_service_token_secret(self) -> Self:
        if (
            self.service_token_secret is not None
            and self.service_token_secret_file is not None
        ):
            raise ValueError(
                "service_token_secret and service_token_secret_file are exclusive"
            )
        return self

    def service_token_signer(
        self, clock: Clock | None = None
    ) -> ServiceTokenSigner | None:
        """What signs the gateway's calls to the services, or None without a secret.

        Raises:
            ServiceIdentityConfigError: the secret is too short, or its file cannot
                be read.
        """
        secret = read_token_secret(
            self.service_token_secret, self.service_token_secret_file
        )
        if secret is None:
            return None
        return ServiceTokenSigner(secret, self.service_identity, clock)

    def downstream_tls(self) -> ClientTls | None:
        """TLS of the channels to the downstream services, or None for plaintext."""
        if self.downstream_tls_ca_file is None:
            return None
        return ClientTls(
            self.downstream_tls_ca_file,
            self.downstream_tls_cert_file,
            self.downstream_tls_key_file,
            self.downstream_tls_server_name,
        )
