"""Settings of the OpenAI simulator, read from ``TOLLGATE_SIMULATOR_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.simulator.faults import FaultKind


class SimulatorSettings(BaseSettings):
    """Configuration of the OpenAI simulator.

    Every field can be set from the environment with the prefix
    ``TOLLGATE_SIMULATOR_`` (for example ``TOLLGATE_SIMULATOR_PORT=9000``).
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_SIMULATOR_", frozen=True, extra="ignore"
    )

    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; loopback by default.",
    )
    port: int = Field(
        default=8089,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free ephemeral port.",
    )
    latency_ms: float = Field(
        default=20.0,
        ge=0,
        description="Base latency in milliseconds before the first byte of an answer.",
    )
    per_token_latency_ms: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Delay in milliseconds between streamed deltas, and per output token "
            "for non-streamed answers."
        ),
    )
    default_max_output_tokens: int = Field(
        default=64,
        ge=1,
        description=(
            "Upper bound in tokens of a natural (uncapped) answer; each answer's "
            "natural length lies between 8 and this, chosen by the request hash."
        ),
    )
    fault_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Probability (0..1) that an API request fails with fault_kind.",
    )
    fault_kind: FaultKind = Field(
        default=FaultKind.SERVER_ERROR,
        description=(
            "Fault injected at fault_rate: rate_limit, server_error, unavailable, "
            "hang or broken_stream."
        ),
    )
    retry_after_seconds: int = Field(
        default=1,
        ge=0,
        description="Value of the Retry-After header (seconds) on injected 429s.",
    )
    hang_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "How long a 'hang' fault waits before answering; longer than a client "
            "timeout by design."
        ),
    )
    seed: int = Field(
        default=0,
        description=(
            "Seed of the random generator that draws config-driven faults, and of "
            "the per-line draw of batch_failure_rate."
        ),
    )
    batch_completion_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "Seconds from creation until a batch completes: validating for the "
            "first tenth, in_progress until nine tenths, then finalizing. A "
            "cancelled batch takes a tenth of it to go from cancelling to cancelled."
        ),
    )
    batch_failure_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Probability (0..1) that a batch line fails with a 500 in the error "
            "file; drawn per custom_id from the seed, so reproducible."
        ),
    )
