"""The gateway's plain data: what flows between the orchestrator and its ports."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from services.core.conversation import FinishReason, Prompt, ToolCall


class Priority(enum.IntEnum):
    """Scheduling priority; lower value is served first."""

    CRITICAL = 0
    REALTIME = 1
    STANDARD = 2
    BATCH = 3
    LOW = 4


class RequestType(enum.Enum):
    """The kind of request, which sets its token budget."""

    CHAT = "chat"
    SUMMARIZE = "summarize"
    ANALYZE = "analyze"
    CLASSIFY = "classify"
    GENERATE = "generate"


class CacheStatus(enum.Enum):
    """Where an answer came from."""

    MISS = "miss"
    EXACT = "exact"
    SEMANTIC = "semantic"
    SKIPPED = "skipped"


class DegradationLevel(enum.IntEnum):
    """Seed section 6's ladder, level 0 to 4."""

    FULL_SERVICE = 0
    REDUCED_QUALITY = 1
    CACHED_ONLY = 2
    STATIC_FALLBACK = 3
    MAINTENANCE = 4


class Lane(enum.Enum):
    """How a routed request is served."""

    SYNC = "sync"
    BATCH = "batch"
    CACHE_ONLY = "cache_only"
    STATIC = "static"
    QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an API key stands for, and the models it may use (empty: any).

    Attributes:
        key_id: the key's public id (never the key): usage is booked under it.
    """

    tenant_id: str
    service: str
    user_id: str
    user_tier: str
    allowed_models: tuple[str, ...] = ()
    key_id: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Principal:
        """The principal a JSON object (``dataclasses.asdict``) was made from."""
        return cls(
            tenant_id=data["tenant_id"],
            service=data["service"],
            user_id=data["user_id"],
            user_tier=data["user_tier"],
            allowed_models=tuple(data.get("allowed_models", ())),
            key_id=data.get("key_id", ""),
        )

    def may_use(self, model: str) -> bool:
        """Whether the key may name ``model`` (``auto`` for the router's choice)."""
        return not self.allowed_models or model in self.allowed_models


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one model call."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    """Of the output tokens, those spent reasoning (billed as output)."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    """A validated request for a model answer."""

    prompt: Prompt
    model: str
    priority: Priority
    request_type: RequestType
    max_output_tokens: int
    temperature: float | None
    user_id: str
    metadata: dict[str, str]
    cache_bypass: bool
    asynchronous: bool = False
    top_p: float | None = None
    safety_identifier: str = ""


@dataclass(frozen=True, slots=True)
class RouteLease:
    """The router's leave to reuse a decision for requests that route alike.

    Attributes:
        duration_seconds: how long, from the decision's arrival.
        max_output_tokens_cap: the output limit before the request's own.
        tier: the routed tier, for the router's statistics.
        prices: the routed model's list prices (input, output), micro-dollars per
            million tokens.
        premium_prices: the premium tier's, for the savings the router reports.
    """

    duration_seconds: float
    max_output_tokens_cap: int
    tier: str
    prices: tuple[int, int]
    premium_prices: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Route:
    """The router's decision for one request."""

    model: str
    deployment: str
    lane: Lane
    max_output_tokens: int
    input_token_cap: int
    degradation_level: DegradationLevel
    fallback_models: tuple[str, ...] = ()
    fallback_text: str = ""
    deployment_instructions: str = ""
    temperature: float | None = None
    worst_case_cost_micros: int = 0
    lease: RouteLease | None = None
    """Set when requests of the same model, priority and type may reuse it."""


@dataclass(frozen=True, slots=True)
class RateHeadroom:
    """What is left of the tightest limit of one metric after a decision.

    Attributes:
        metric: ``requests`` or ``tokens``.
        limit_per_minute: that bucket's effective rate.
        remaining: units it can admit now.
        reset_seconds: until it is full again, at its rate.
    """

    metric: str
    limit_per_minute: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The limiter's answer, with the headroom left per metric."""

    allowed: bool
    reservation_id: str = ""
    retry_after_seconds: float = 0.0
    denied_subject: str = ""
    denied_description: str = ""
    headroom: tuple[RateHeadroom, ...] = ()


@dataclass(frozen=True, slots=True)
class CacheKeyParts:
    """The parts of a request that decide its cached answer.

    ``input`` is the last user text; everything else the model reads is in the
    instructions, the canonical tools and format, and the context digest
    (:func:`services.core.conversation.cache_context`).
    """

    tenant_id: str
    model: str
    instructions: str
    input: str
    temperature: float | None
    max_output_tokens: int
    top_p: float | None = None
    tools_json: str = ""
    response_format_json: str = ""
    context_digest: str = ""
    multi_turn: bool = False
    exact_only_reason: str = ""
    request_type: RequestType = RequestType.CHAT
    """Not part of the key: it selects the cache's per-route semantic policy."""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A cache hit."""

    output_text: str
    model: str
    usage: Usage
    status: CacheStatus
    similarity: float
    age_seconds: float = 0.0
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = FinishReason.STOP
    semantic_check: str = ""
    """On a semantic hit: the verification check that accepted it."""


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One call of the model: what it reads and the parameters it answers under."""

    model: str
    prompt: Prompt
    max_output_tokens: int
    temperature: float | None
    top_p: float | None = None
    safety_identifier: str = ""
    prompt_cache_key: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """What the upstream answered."""

    output_text: str
    model: str
    usage: Usage
    truncated: bool
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = FinishReason.STOP


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """The ledger's budget decision for one request."""

    allowed: bool
    reservation_id: str = ""
    downgrade_model: str = ""
    resets_at: float | None = None
    description: str = ""
    remaining_micros: int = 0
    """Left in the tightest budget after this reservation (on a refusal, before
    it); 0 without budgets."""
    tenant_unbudgeted_seconds: float = 0.0
    """How long the ledger says the principal's tenant holds no budget at all, so
    its requests need no check; 0: check every request."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's usage for the ledger; the request id is the idempotency key."""

    request_id: str
    principal: Principal
    model: str
    requested_model: str
    deployment: str
    usage: Usage
    cache_status: CacheStatus
    occurred_at: float
    batch: bool = False
    budget_reservation_id: str = ""


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What the ledger booked."""

    cost_micros: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ResponseReply:
    """The gateway's answer."""

    output_text: str
    model: str
    deployment: str
    cache_status: CacheStatus
    similarity: float
    usage: Usage
    cost_micros: int
    request_id: str
    degradation_level: DegradationLevel
    input_truncated: bool
    input_tokens_dropped: int
    output_truncated: bool
    latency_seconds: float
    ticket_id: str = ""
    cache_age_seconds: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    semantic_check: str = ""
    rate_headroom: tuple[RateHeadroom, ...] = ()
    """The limits' headroom after this request was admitted (OpenAI's
    x-ratelimit-* headers); empty when the local fallback limiter decided."""


@dataclass(frozen=True, slots=True)
class StreamStart:
    """First event of a streamed answer: where it comes from."""

    request_id: str
    model: str
    deployment: str
    cache_status: CacheStatus
    degradation_level: DegradationLevel
    input_truncated: bool
    similarity: float = 0.0
    cache_age_seconds: float | None = None
    input_tokens_dropped: int = 0
    semantic_check: str = ""
    rate_headroom: tuple[RateHeadroom, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: the first carries its id and name."""

    index: int
    id: str
    name: str
    arguments_delta: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Last event of a complete streamed answer."""

    usage: Usage
    cost_micros: int
    output_truncated: bool
    finish_reason: FinishReason | None = None
    tool_calls: tuple[ToolCall, ...] = ()


StreamEvent = StreamStart | StreamDelta | ToolCallDelta | StreamEnd
