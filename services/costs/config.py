"""Settings of the costs service, read from ``TOLLGATE_COSTS_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.settings import InternalServerSettings

DEFAULT_PORT = 50055
# A shorter HMAC key is too easy to guess.
MIN_WEBHOOK_SECRET_LENGTH = 16


class WebhookEndpointSettings(BaseModel):
    """One webhook endpoint that budget alerts are delivered to."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Stable name (lowercase letters, digits, '-' and '_'): part of "
        "the idempotency key and of the delivery log; renaming makes a new endpoint.",
    )
    url: str = Field(
        pattern=r"^https?://\S+$",
        max_length=2048,
        repr=False,
        description="Where alerts are POSTed; never logged.",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of X-Tollgate-Signature (at least 16 "
        "characters); or set it in alert_webhook_secrets. Required for 'json'.",
    )
    format: Literal["json", "slack"] = Field(
        default="json",
        description="'json' (the signed alert document) or 'slack' "
        '({"text": ...}, for a Slack incoming webhook).',
    )
    tenant_ids: tuple[str, ...] = Field(
        default=(),
        description="Only alerts of these tenants' scopes; empty for every alert.",
    )
    min_threshold_percent: int = Field(
        default=0, ge=0, description="Only alerts at this threshold or above."
    )


class CostsSettings(InternalServerSettings):
    """Configuration of the costs service.

    Every field can be set from the environment with the prefix ``TOLLGATE_COSTS_``
    (for example ``TOLLGATE_COSTS_DATABASE_PATH=/data/costs.sqlite3``).
    """

    # Errors name the field and the rule but never echo input: webhook URLs and
    # secrets, and a DSN's password, must not reach a log.
    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_COSTS_",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    database_path: Path = Field(
        default=Path(".tollgate/costs.sqlite3"),
        description="SQLite file of the ledger; parent directories are created. "
        "':memory:' keeps the ledger in memory, for tests only.",
    )
    pricing_file: Path | None = Field(
        default=None,
        description="YAML pricing table replacing the packaged "
        "services/core/default_pricing.yaml.",
    )
    postgres_dsn: str | None = Field(
        default=None,
        description="libpq connection string or URL of a Postgres ledger "
        "(e.g. 'host=db dbname=tollgate user=costs'); when set it replaces the "
        "SQLite file, so that several costs replicas can share one ledger.",
    )
    postgres_pool_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Postgres connections (each on its own thread) per replica.",
    )
    reservation_ttl_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a CheckBudget reservation counts against budgets "
        "when no Record settles it.",
    )
    budget_refresh_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How often each replica reads which scopes hold a budget; a "
        "check for a caller none of whose scopes holds one is then allowed without "
        "a ledger transaction, and when the caller's whole tenant holds none, the "
        "gateway skips its checks for this long. A new budget binds everywhere "
        "within two intervals; 0 sends every check to the ledger.",
    )
    alert_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each replica reads the alerts other replicas fired, "
        "for its own WatchAlerts watchers.",
    )
    max_batch_size: int = Field(
        default=512,
        ge=1,
        description="Most Records (or CheckBudgets) grouped into one commit.",
    )
    batch_linger_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="Under load (a commit ended less than this ago), how long a "
        "commit of Records waits for more to join it; 0 commits at once. "
        "CheckBudgets never wait.",
    )
    timezone: ZoneInfo = Field(
        default=ZoneInfo("UTC"),
        description="IANA time zone of report days and budget periods "
        "(e.g. Europe/Paris).",
    )
    alert_webhooks: tuple[WebhookEndpointSettings, ...] = Field(
        default=(),
        description="Webhook endpoints of budget alerts, as JSON: "
        '\'[{"name": "ops", "url": "https://hooks.example.com/tollgate", '
        '"secret": "...", "tenant_ids": ["acme"], "min_threshold_percent": 90}, '
        '{"name": "slack", "url": "https://hooks.slack.com/services/...", '
        '"format": "slack"}]\'. Every replica of one ledger needs the same list '
        "(docs/alerts.md).",
    )
    alert_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="HMAC secrets by endpoint name, as JSON "
        '(\'{"ops": "..."}\'), so that they can come from a secret store apart '
        "from the endpoint list; one here replaces the endpoint's own.",
    )
    alert_webhook_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long one delivery attempt waits for the receiver's answer.",
    )
    alert_webhook_max_attempts: int = Field(
        default=20,
        ge=1,
        description="Attempts of one alert's delivery to one endpoint before it "
        "is given up (FAILED).",
    )
    alert_webhook_max_age_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="No attempt is made later than this after the alert fired: a "
        "retry that would come later gives the delivery up.",
    )
    alert_webhook_initial_backoff_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Wait before the first retry; it doubles at each retry, times "
        "a random factor in [0.5, 1).",
    )
    alert_webhook_max_backoff_seconds: float = Field(
        default=3_600.0,
        gt=0,
        description="Longest wait between two attempts (also caps Retry-After).",
    )
    alert_webhook_poll_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each replica looks for due deliveries (retries, and "
        "alerts other replicas fired); its own alerts are sent at once.",
    )

    @model_validator(mode="after")
    def _webhooks_are_consistent(self) -> Self:
        names = [endpoint.name for endpoint in self.alert_webhooks]
        if len(names) != len(set(names)):
            raise ValueError("alert_webhooks has two endpoints with the same name")
        unknown = sorted(set(self.alert_webhook_secrets) - set(names))
        if unknown:
            raise ValueError(
                "alert_webhook_secrets names no endpoint of alert_webhooks: "
                + ", ".join(unknown)
            )
        for endpoint in self.alert_webhooks:
            secret = self.webhook_secret(endpoint.name)
            if secret is None and endpoint.format == "json":
                raise ValueError(
                    f"alert webhook {endpoint.name!r} (format json) needs a secret"
                )
            if secret is not None and (
                len(secret.get_secret_value()) < MIN_WEBHOOK_SECRET_LENGTH
            ):
                raise ValueError(
                    f"the secret of alert webhook {endpoint.name!r} must be at "
                    f"least {MIN_WEBHOOK_SECRET_LENGTH} characters"
                )
        if self.alert_webhook_initial_backoff_seconds > (
            self.alert_webhook_max_backoff_seconds
        ):
            raise ValueError(
                "alert_webhook_initial_backoff_seconds exceeds "
                "alert_webhook_max_backoff_seconds"
            )
        return self

    def webhook_secret(self, name: str) -> SecretStr | None:
        """The HMAC secret of endpoint ``name``: the secrets map's, else its own."""
        if name in self.alert_webhook_secrets:
            return self.alert_webhook_secrets[name]
        for endpoint in self.alert_webhooks:
            if endpoint.name == name:
                return endpoint.secret
        return None
