"""Settings of the router service, read from ``TOLLGATE_ROUTER_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.settings import InternalServerSettings

DEFAULT_PORT = 50054


class RouterSettings(InternalServerSettings):
    """Configuration of the router service.

    Every field can be set from the environment with the prefix
    ``TOLLGATE_ROUTER_`` (for example ``TOLLGATE_ROUTER_ROUTING_FILE=/etc/r.yaml``).
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_ROUTER_", frozen=True, extra="ignore"
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    routing_file: Path | None = Field(
        default=None,
        description="YAML routing table; unset uses the built-in "
        "services/router/default_routing.yaml. The file is watched and reloaded "
        "when it changes; an invalid version is logged and the old table kept.",
    )
    routing_file_check_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the routing file's modification time is checked.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by every router replica (degradation level, "
        "traffic split, rollbacks, outcomes, routing counts), for example "
        "redis://redis:6379/0; unset keeps that state in this process.",
    )
    complexity_model_file: Path | None = Field(
        default=None,
        description="Complexity model for model 'auto' (a file written by "
        "bench/router_finetune.py, with the encoder file it names beside it); "
        "unset uses the shipped services/router/complexity_model.json.",
    )
    quality_bias: float | None = Field(
        default=None,
        ge=-5.0,
        le=5.0,
        description="Cost against quality for model 'auto', in one number: the "
        "capable (premium) tier is used once the probability that a prompt needs "
        "it reaches 1 / (1 + exp(quality_bias)). Higher sends more prompts to the "
        "capable model (fewer under-served, more cost); unset uses the model's "
        "tuned default (see docs/router-complexity.md).",
    )
    complexity_encoder: bool = Field(
        default=True,
        description="Run the fine-tuned complexity encoder named by the "
        "complexity model for the 'auto' requests its student is not sure of "
        "(loaded the first time one arrives). False classifies every request "
        "with the student alone: less accurate, and the router never loads "
        "onnxruntime or the encoder (about 75 MB).",
    )
    complexity_student_confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="How sure the complexity model's student must be of a tier "
        "for its answer to stand without running the encoder (the probability of "
        "that tier). Lower runs the encoder less (cheaper, less accurate); 1.0 "
        "runs it for every 'auto' request; unset uses the model's tuned value "
        "(see docs/router-complexity.md).",
    )
    shadow_complexity_model_file: Path | None = Field(
        default=None,
        description="Shadow mode: a second complexity model that classifies every "
        "'auto' request beside the one in force; its choice is logged "
        "(route_shadow) and counted per tenant in GetRoutingStats, never served.",
    )
    route_lease_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description="How long a gateway may reuse a routing decision that no field "
        "of the request changes (a named model or none, full service, one "
        "deployment taking all the traffic) for requests of the same model, "
        "priority and request type, without calling Route. A degradation level or "
        "traffic split set later binds within this time. 0 routes every request "
        "here.",
    )
    shadow_quality_bias: float | None = Field(
        default=None,
        ge=-5.0,
        le=5.0,
        description="quality_bias of the shadow model; unset uses its default.",
    )
