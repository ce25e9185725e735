"""The routing table: a validated YAML data file, separate from settings.

Prices are integer micro-dollars per 1M tokens. The built-in table ships inside the
package as ``default_routing.yaml``; ``TOLLGATE_ROUTER_ROUTING_FILE`` replaces it.
Every cross-reference (tier names, models, deployments) is checked at load time, so
a bad table stops the service at start-up instead of misrouting requests.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.router.enums import Lane, Priority, RequestType

DEFAULT_TABLE_RESOURCE = "default_routing.yaml"

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


class PriorityRoute(_Strict):
    """Where requests of one priority go when the caller lets the router choose."""

    tier: str = Field(min_length=1, description="Name of the tier to use.")
    lane: Lane = Field(default=Lane.SYNC, description="sync or batch.")

    @model_validator(mode="after")
    def _lane_is_chosen_by_priority(self) -> Self:
        if self.lane not in _PRIORITY_LANES:
            raise ValueError(f"lane must be sync or batch, not {self.lane.value}")
        return self


class RequestTypeBudget(_Strict):
    """Token budget and static answer of one request type."""

    max_input_tokens: int = Field(gt=0, description="Input token cap.")
    max_output_tokens: int = Field(gt=0, description="Output token budget.")
    static_fallback: str = Field(
        min_length=1, description="Answer served at the static-fallback level."
    )


class Deployment(_Strict):
    """A deployable configuration (blue/green/canary) with its traffic share."""

    version: str = Field(min_length=1, description="Version tag.")
    traffic_percent: int = Field(ge=0, le=100, description="Initial traffic share.")
    instructions: str = Field(
        default="", description="Instructions the deployment prepends."
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Temperature the deployment pins."
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
            if route.tier not in self.tiers:
                problems.append(
                    f"priorities.{priority.value}.tier: unknown tier {route.tier!r}"
                )
        models = [tier.model for tier in self.tiers.values()]
        if len(set(models)) != len(models):
            problems.append("tiers: each model may belong to one tier only")
        if sorted(self.fallback_order) != sorted(set(models)):
            problems.append("fallback_order must list every tier's model exactly once")
        total = sum(d.traffic_percent for d in self.deployments.values())
        if total != 100:
            problems.append(f"deployments: traffic_percent adds up to {total}, not 100")
        if any(not name for name in [*self.tiers, *self.deployments]):
            problems.append("tier and deployment names must not be empty")
        if problems:
            raise ValueError("; ".join(problems))
        return self

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
