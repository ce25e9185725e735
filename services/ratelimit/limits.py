"""The rate-limit rules: a validated YAML file, separate from the settings.

Without a file the built-in defaults apply: free users 20 requests per minute, paid
users 100, no token limits, no service shares and no per-model limits. A file
replaces each top-level section it names; see ``limits.example.yaml``.

:class:`LimitsWatcher` reloads the file when its modification time or size changes:
a valid file replaces the rules at once, an invalid one is logged and the rules in
force stay.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Self

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_log = structlog.get_logger("tollgate.ratelimit")

# Float shares times integer rates land a hair under a whole number (0.57 * 100 is
# 56.99999999999999); this tolerance makes the floor the one a person would compute.
_SHARE_EPSILON = 1e-9


class RateRule(BaseModel):
    """Per-minute rates for one bucket owner; an unset rate means no such bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(
        default=None, ge=1, description="Requests per minute; unset: not limited."
    )
    tpm: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per minute (input plus maximum output); "
        "unset: not limited.",
    )

    def over(self, base: RateRule) -> RateRule:
        """This rule's rates where set, ``base``'s elsewhere (per-user overrides)."""
        return RateRule(
            rpm=self.rpm if self.rpm is not None else base.rpm,
            tpm=self.tpm if self.tpm is not None else base.tpm,
        )

    def share(self, fraction: float) -> RateRule:
        """``fraction`` of each rate, rounded down, at least 1 (service shares)."""

        def part(rate: int | None) -> int | None:
            if rate is None:
                return None
            return max(1, math.floor(rate * fraction + _SHARE_EPSILON))

        return RateRule(rpm=part(self.rpm), tpm=part(self.tpm))


DescriptorField = Literal["tenant", "user", "tier", "service", "model", "metric"]


def _default_entries() -> dict[str, DescriptorField]:
    return {
        "tenant": "tenant",
        "user": "user",
        "tier": "tier",
        "service": "service",
        "model": "model",
        "metric": "metric",
    }


class EnvoyMapping(BaseModel):
    """How Envoy's ShouldRateLimit descriptors map onto the limiter's layers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    domains: list[str] = Field(
        default_factory=list,
        description="Envoy rate-limit domains this service answers for; a request "
        "for another domain is OK with no limits. Empty: every domain.",
    )
    entries: dict[str, DescriptorField] = Field(
        default_factory=_default_entries,
        description="Descriptor entry key to the field it fills: tenant, user, tier "
        "(select the user layer), service (with model, the service layer), model "
        "(the global layer), metric ('tokens' makes hits_addend count tokens).",
    )
    default_tenant: str = Field(
        default="envoy",
        min_length=1,
        description="The tenant of descriptors that name a user but no tenant.",
    )


def _default_tiers() -> dict[str, RateRule]:
    return {"free": RateRule(rpm=20), "paid": RateRule(rpm=100)}


class RateLimits(BaseModel):
    """Every rule the limiter applies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    burst_multiplier: float = Field(
        default=1.0,
        ge=1.0,
        description="Bucket capacity as a multiple of the per-minute rate. 1.0 makes "
        "'20 RPM' admit exactly 20 requests in a burst; 1.2 allows 24.",
    )
    default_tier: str = Field(
        default="free",
        description="The tier of users whose tier is empty or not listed in tiers.",
    )
    tiers: dict[str, RateRule] = Field(
        default_factory=_default_tiers,
        description="Per-user limits by user tier (the user layer).",
    )
    users: dict[str, RateRule] = Field(
        default_factory=dict,
        description="Per-user overrides keyed 'tenant:user': each rate given replaces "
        "the tier's; rates not given stay the tier's.",
    )
    services: dict[str, float] = Field(
        default_factory=dict,
        description="The service layer: each calling service's share (0 < share <= 1, "
        "summing to at most 1) of every model's global RPM and TPM. Services not "
        "listed have no service buckets.",
    )
    models: dict[str, RateRule] = Field(
        default_factory=dict,
        description="Limits per upstream model, the OpenAI account's own (the global "
        "layer); models not listed have no global or service buckets.",
    )
    envoy: EnvoyMapping = Field(
        default_factory=EnvoyMapping,
        description="Mapping of Envoy rate-limit descriptors onto the layers.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not in tiers")
        for service, share in self.services.items():
            if not 0 < share <= 1:
                raise ValueError(f"services.{service}: share must be in (0, 1]")
        if sum(self.services.values()) > 1 + _SHARE_EPSILON:
            raise ValueError("services: the shares add up to more than 1")
        for key in self.users:
            tenant, sep, user = key.partition(":")
            if not (tenant and sep and user):
                raise ValueError(f"users.{key}: keys are 'tenant:user'")
        return self

    def user_rule(self, tenant_id: str, user_id: str, tier: str) -> RateRule:
        """The user layer's rates for one user: tier, then any per-user override."""
        base = self.tiers.get(tier) or self.tiers[self.default_tier]
        override = self.users.get(f"{tenant_id}:{user_id}") if user_id else None
        return override.over(base) if override is not None else base

    def service_rule(self, service: str, model: str) -> RateRule | None:
        """The service layer's rates for ``service`` on ``model``, if it has any."""
        share = self.services.get(service)
        rule = self.models.get(model)
        if share is None or rule is None:
            return None
        return rule.share(share)


def load_limits(path: Path | None) -> RateLimits:
    """Read and validate the limits file, or return the defaults when ``path`` is None.

    Raises:
        OSError: the file cannot be read.
        yaml.YAMLError: the file is not valid YAML.
        pydantic.ValidationError: the rules are not of the expected shape.
    """
    if path is None:
        return RateLimits()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return RateLimits.model_validate(data)


class LimitsWatcher:
    """Reloads the limits file when it changes; a bad file keeps the rules in force.

    Args:
        path: the limits file, already loaded once (start-up fails on a bad file).
        on_change: receives each newly loaded, valid set of rules.
    """

    def __init__(self, path: Path, on_change: Callable[[RateLimits], None]) -> None:
        self._path = path
        self._on_change = on_change
        self._seen = self._signature()

    def check(self) -> bool:
        """Reload if the file changed since the last check; whether rules changed."""
        signature = self._signature()
        if signature == self._seen:
            return False
        self._seen = signature
        try:
            limits = load_limits(self._path)
        except (OSError, yaml.YAMLError, ValidationError) as error:
            _log.error(
                "limits_reload_failed",
                path=str(self._path),
                error_type=type(error).__name__,
                error=str(error),
            )
            return False
        self._on_change(limits)
        _log.info("limits_reloaded", path=str(self._path))
        return True

    async def run(self, interval_seconds: float) -> None:
        """Check every ``interval_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            self.check()

    def _signature(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)
