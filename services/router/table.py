"""The routing table: a validated YAML data file, separate from settings.

Prices are integer micro-dollars per 1M tokens. The built-in table ships inside the
package as ``default_routing.yaml``; ``TOLLGATE_ROUTER_ROUTING_FILE`` replaces it.
Every cross-reference (tier names, models, deployments) is checked at load time, so
a bad table stops the service at start-up instead of misrouting requests, and a
bad edit of a running service's file is logged and ignored (:class:`TableWatcher`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Self

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.router.enums import Complexity, Lane, Priority, RequestType

DEFAULT_TABLE_RESOURCE = "default_routing.yaml"

_log = structlog.get_logger("tollgate.router")

# Lanes a priority may ask for; the others are chosen by the degradation level.
_PRIORITY_LANES = frozenset({Lane.SYNC, Lane.BATCH})


class RoutingTableError(ValueError):
    """The routing table cannot be read or is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tier(_Strict):
    """A model tier and the list price of its model."""

    model: str = Field(min_length=1, description="Upstream model name.")
    input_micros_per_million: int = Field(
        ge=0, description="Price of 1M input tokens in micro-dollars."
    )
    cached_input_micros_per_million: int = Field(
        ge=0, description="Price of 1M cached input tokens in micro-dollars."
    )
    output_micros_per_million: int = Field(
        ge=0, description="Price of 1M output tokens in micro-dollars."
    )
    max_complexity: Complexity = Field(
        description="The hardest prompts (trivial, simple, moderate, complex) the "
        "tier's model answers well; auto routing picks the cheapest capable tier."
    )

    @model_validator(mode="after")
    def _complexity_is_a_class(self) -> Self:
        if self.max_complexity is Complexity.UNSPECIFIED:
            raise ValueError(
                "max_complexity must be trivial, simple, moderate or complex"
            )
        return self


class PriorityRoute(_Strict):
    """Where requests of one priority go when the caller lets the router choose."""

    tier: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the tier to use; unset takes the request type's tier.",
    )
    lane: Lane = Field(default=Lane.SYNC, description="sync or batch.")

    @model_validator(mode="after")
    def _lane_is_chosen_by_priority(self) -> Self:
        if self.lane not in _PRIORITY_LANES:
            raise ValueError(f"lane must be sync or batch, not {self.lane.value}")
        return self


class RequestTypeBudget(_Strict):
    """Token budget, model preset and static answer of one request type."""

    tier: str = Field(
        min_length=1,
        description="The model preset: the tier used when the priority sets none.",
    )
    max_input_tokens: int = Field(gt=0, description="Input token cap.")
    max_output_tokens: int = Field(gt=0, description="Output token budget.")
    static_fallback: str = Field(
        min_length=1, description="Answer served at the static-fallback level."
    )


class CanaryGuard(_Strict):
    """When a canary is rolled back: its outcomes against its baseline's.

    Both deployments need ``min_requests`` outcomes in their recent window before
    the guard judges; then an error rate above the baseline's by more than
    ``max_error_rate_increase``, or a p95 latency above ``max_p95_latency_ratio``
    times the baseline's, rolls the canary back to 0%.
    """

    baseline: str = Field(min_length=1, description="The stable deployment.")
    min_requests: int = Field(
        default=100, gt=0, description="Outcomes each side needs before judging."
    )
    max_error_rate_increase: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Tolerated error rate above the baseline's (0.05 = 5 points).",
    )
    max_p95_latency_ratio: float = Field(
        default=1.5, ge=1, description="Tolerated p95 latency as a multiple."
    )


class Deployment(_Strict):
    """A deployable configuration (blue/green/canary) with its traffic share."""

    version: str = Field(min_length=1, description="Version tag.")
    traffic_percent: int = Field(ge=0, le=100, description="Initial traffic share.")
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Model the deployment pins for routed (auto) requests; one of "
        "the tiers' models. Unset keeps the routed model.",
    )
    instructions: str = Field(
        default="", description="Instructions the deployment prepends."
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Temperature the deployment pins."
    )
    max_output_tokens: int | None = Field(
        default=None, gt=0, description="Cap on the output budget of its requests."
    )
    guard: CanaryGuard | None = Field(
        default=None,
        description="Makes the deployment a canary of ``guard.baseline``.",
    )


class RoutingTable(_Strict):
    """The whole routing table."""

    tiers: dict[str, Tier] = Field(min_length=1, description="Tiers by name.")
    priorities: dict[Priority, PriorityRoute] = Field(
        description="Route of every priority."
    )
    request_types: dict[RequestType, RequestTypeBudget] = Field(
        description="Budget of every request type."
    )
    deployments: dict[str, Deployment] = Field(
        min_length=1, description="Deployments by name; shares add up to 100."
    )
    fallback_order: list[str] = Field(
        description="Every tier's model, most capable first; the first is the "
        "premium baseline of the savings report."
    )
    busy_message: str = Field(
        min_length=1, description="Answer to a cache miss at the cached-only level."
    )

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        problems: list[str] = []
        missing_priorities = [p.value for p in Priority if p not in self.priorities]
        if missing_priorities:
            problems.append(f"priorities missing: {', '.join(missing_priorities)}")
        missing_types = [t.value for t in RequestType if t not in self.request_types]
        if missing_types:
            problems.append(f"request_types missing: {', '.join(missing_types)}")
        for priority, route in self.priorities.items():
            if route.tier is not None and route.tier not in self.tiers:
                problems.append(
                    f"priorities.{priority.value}.tier: unknown tier {route.tier!r}"
                )
        for request_type, budget in self.request_types.items():
            if budget.tier not in self.tiers:
                problems.append(
                    f"request_types.{request_type.value}.tier: "
                    f"unknown tier {budget.tier!r}"
                )
        models = [tier.model for tier in self.tiers.values()]
        if len(set(models)) != len(models):
            problems.append("tiers: each model may belong to one tier only")
        if sorted(self.fallback_order) != sorted(set(models)):
            problems.append("fallback_order must list every tier's model exactly once")
        else:
            problems += self._check_capabilities()
        problems += self._check_deployments(set(models))
        total = sum(d.traffic_percent for d in self.deployments.values())
        if total != 100:
            problems.append(f"deployments: traffic_percent adds up to {total}, not 100")
        if any(not name for name in [*self.tiers, *self.deployments]):
            problems.append("tier and deployment names must not be empty")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _check_capabilities(self) -> list[str]:
        ranks = list(Complexity)
        by_model = {tier.model: tier for tier in self.tiers.values()}
        capabilities = [
            ranks.index(by_model[m].max_complexity) for m in self.fallback_order
        ]
        problems = []
        if capabilities != sorted(capabilities, reverse=True):
            problems.append(
                "fallback_order must go from the most capable model to the least "
                "(max_complexity must not increase along it)"
            )
        if capabilities[0] != ranks.index(Complexity.COMPLEX):
            problems.append("the first model of fallback_order must handle complex")
        return problems

    def _check_deployments(self, models: set[str]) -> list[str]:
        problems = []
        for name, deployment in self.deployments.items():
            if deployment.model is not None and deployment.model not in models:
                problems.append(
                    f"deployments.{name}.model: unknown model {deployment.model!r}"
                )
            guard = deployment.guard
            if guard is None:
                continue
            baseline = self.deployments.get(guard.baseline)
            if baseline is None or guard.baseline == name:
                problems.append(
                    f"deployments.{name}.guard.baseline: must name another deployment"
                )
            elif baseline.guard is not None:
                problems.append(
                    f"deployments.{name}.guard.baseline: {guard.baseline!r} is a "
                    "canary itself"
                )
        return problems

    def premium_tier_name(self) -> str:
        """The tier of the first (most capable) model: the savings baseline."""
        return self.tier_of(self.fallback_order[0])

    def tier_of(self, model: str) -> str:
        """The name of the tier serving ``model``."""
        return next(name for name, t in self.tiers.items() if t.model == model)

    def cheaper_than(self, model: str) -> list[str]:
        """The models after ``model`` in the fallback order, in order."""
        return self.fallback_order[self.fallback_order.index(model) + 1 :]

    def initial_split(self) -> dict[str, int]:
        """The traffic share of each deployment as the table sets it."""
        return {name: d.traffic_percent for name, d in self.deployments.items()}


def parse_routing_table(text: str, source: str) -> RoutingTable:
    """Parse and validate a routing table from YAML ``text`` read from ``source``.

    Raises:
        RoutingTableError: the YAML is malformed or the table is invalid.
    """
    try:
        return RoutingTable.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as error:
        raise RoutingTableError(f"invalid routing table {source}: {error}") from error


def load_routing_table(path: Path | None) -> RoutingTable:
    """Load the table at ``path``, or the built-in default when ``path`` is None.

    Raises:
        RoutingTableError: the file cannot be read or the table is invalid.
    """
    if path is None:
        resource = resources.files("services.router") / DEFAULT_TABLE_RESOURCE
        return parse_routing_table(resource.read_text("utf-8"), DEFAULT_TABLE_RESOURCE)
    try:
        text = path.read_text("utf-8")
    except OSError as error:
        raise RoutingTableError(f"cannot read routing table {path}: {error}") from error
    return parse_routing_table(text, str(path))


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class TableWatcher:
    """Reloads a routing file when its modification time or size changes.

    A file that cannot be read or is invalid is logged and skipped: the table in
    force stays until a valid version appears.
    """

    def __init__(self, path: Path, apply: Callable[[RoutingTable], None]) -> None:
        self._path = path
        self._apply = apply
        self._signature = _signature(path)

    def check(self) -> bool:
        """Reload if the file changed since the last check; True when applied."""
        signature = _signature(self._path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            table = load_routing_table(self._path)
        except RoutingTableError as error:
            _log.error(
                "routing_table_reload_failed", path=str(self._path), error=str(error)
            )
            return False
        self._apply(table)
        _log.info(
            "routing_table_reloaded",
            path=str(self._path),
            deployments=sorted(table.deployments),
        )
        return True
