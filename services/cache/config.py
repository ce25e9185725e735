"""Settings of the cache service, read from ``TOLLGATE_CACHE_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.cache.domain import DEFAULT_JUDGE_THRESHOLD
from services.core.settings import InternalServerSettings

DEFAULT_PORT = 50053
# Chosen on the development sets (bench/data/cache_pairs.jsonl and
# bench/data/cache_dev_2026-12.jsonl) by bench/cache_quality.py: the verification
# guard carries the decision, so the threshold only keeps unrelated entries from
# being verified (see docs/cache.md and bench/results/cache_quality_dev_2026-12.md).
CALIBRATED_THRESHOLD = 0.5
# The semantic tier's default mode. Shadow until the blind set shows the guard
# meets its goals (false hits at most 1%, upper 95% bound at most 2%, paraphrase
# hits at least 50%): see bench/results/cache_quality_blind_2026-12.md.
SemanticModeName = Literal["serve", "shadow", "off"]
DEFAULT_SEMANTIC_MODE: SemanticModeName = "shadow"
RequestTypeName = Literal["", "chat", "summarize", "analyze", "classify", "generate"]


class SemanticRouteRule(BaseModel):
    """A per-tenant, per-request-type rule of the semantic tier.

    The most specific rule that sets a field wins: tenant and request type, then
    tenant, then request type, then the service default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(default="", description="Tenant; empty for every tenant.")
    request_type: RequestTypeName = Field(
        default="", description="Request type; empty for every type."
    )
    mode: SemanticModeName | None = Field(
        default=None, description="Mode; unset to inherit it."
    )
    similarity_threshold: float | None = Field(
        default=None, gt=0, le=1, description="Threshold; unset to inherit it."
    )

    @model_validator(mode="after")
    def _sets_something(self) -> Self:
        if self.mode is None and self.similarity_threshold is None:
            raise ValueError("a semantic rule must set mode or similarity_threshold")
        return self


class CacheSettings(InternalServerSettings):
    """Configuration of the cache service.

    Every field can be set from the environment with the prefix ``TOLLGATE_CACHE_``
    (for example ``TOLLGATE_CACHE_EXACT_MAX_BYTES=134217728``).
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_CACHE_", frozen=True, extra="ignore"
    )

    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 picks a free port.",
    )
    exact_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="Exact tier storage: 'memory' (an in-process LRU bounded by "
        "exact_max_bytes) or 'redis' (bounded by the server's own maxmemory).",
    )
    exact_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Bound in bytes of the in-process exact tier; least recently "
        "used entries are evicted beyond it.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis of the exact tier when exact_backend is 'redis'.",
    )
    redis_key_prefix: str = Field(
        default="tollgate:cache:",
        min_length=1,
        description="Prefix of every Redis key the exact tier writes.",
    )
    default_ttl_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Lifetime in seconds of an entry stored without a TTL. "
        "Absolute: hits do not extend it.",
    )
    max_ttl_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="The longest lifetime in seconds a Store request may ask for; "
        "longer TTLs are capped to it.",
    )
    sweep_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often expired entries are removed from both tiers.",
    )
    semantic_backend: Literal["qdrant-edge", "qdrant", "disabled"] = Field(
        default="qdrant-edge",
        description="Semantic tier index: 'qdrant-edge' (in-process, one process "
        "per storage path), 'qdrant' (a Qdrant server at qdrant_url) or 'disabled'.",
    )
    state_dir: Path = Field(
        default=Path(".tollgate/cache"),
        description="Directory of the embedded semantic index. Without "
        "semantic_index_path each process keeps a private index here that lives as "
        "long as the process, like the in-process exact tier.",
    )
    semantic_index_path: Path | None = Field(
        default=None,
        description="A persistent Qdrant Edge shard directory, kept across "
        "restarts; only one process may open it.",
    )
    qdrant_url: str = Field(
        default="http://127.0.0.1:6333",
        description="Qdrant server of the semantic tier when semantic_backend is "
        "'qdrant'.",
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, description="API key of the Qdrant server. Never logged."
    )
    qdrant_collection: str = Field(
        default="tollgate_semantic_cache",
        min_length=1,
        description="Qdrant collection of the semantic tier.",
    )
    optimize_after_points: int = Field(
        default=5000,
        ge=1,
        description="Qdrant Edge: rebuild the HNSW index in a background process "
        "once this many points were written since the last rebuild.",
    )
    embedding_backend: Literal["static", "minilm", "local", "openai"] = Field(
        default="static",
        description="Embeddings that nominate semantic candidates (the guard decides "
        "every hit): 'static' (all-MiniLM-L6-v2 distilled to a word-piece table, "
        "in process, about 0.04 ms of CPU a text), 'minilm' (the full "
        "all-MiniLM-L6-v2, int8 ONNX, in process, about 5.6 ms a text; 'local' "
        "is its former name) or 'openai' (the embeddings endpoint at "
        "openai_base_url).",
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="OpenAI-compatible base URL for embedding_backend 'openai'.",
    )
    openai_api_key: SecretStr = Field(
        default=SecretStr(""),
        description="API key for embedding_backend 'openai'. Never logged.",
    )
    openai_embedding_model: str = Field(
        default="text-embedding-3-small",
        description="Embedding model for embedding_backend 'openai'.",
    )
    openai_embedding_dimensions: int = Field(
        default=512,
        ge=1,
        description="Vector size requested from the OpenAI embeddings endpoint.",
    )
    similarity_threshold: float = Field(
        default=CALIBRATED_THRESHOLD,
        gt=0,
        le=1,
        description="Minimum cosine similarity of a semantic candidate, for routes "
        "without a rule of their own. Chosen for the local model; the verification "
        "guard decides, the threshold only spares it unrelated candidates.",
    )
    semantic_mode: SemanticModeName = Field(
        default=DEFAULT_SEMANTIC_MODE,
        description="What the semantic tier does for routes without a rule: "
        "'serve' (verified candidates are served), 'shadow' (they are looked up, "
        "logged without text and counted, the lookup answers a miss, and the "
        "fresh answer's agreement is reported by GetStats) or 'off'. Shadow by "
        "default until the blind figures meet the goals (docs/cache.md); set "
        "'serve' here, or per tenant with semantic_rules or the SetSemanticPolicy "
        "admin RPC, to serve semantic hits.",
    )
    semantic_rules: tuple[SemanticRouteRule, ...] = Field(
        default=(),
        description="Per-tenant and per-request-type rules, as JSON: "
        '\'[{"tenant_id": "acme", "mode": "serve"}, {"request_type": "generate", '
        '"mode": "off"}, {"tenant_id": "acme", "request_type": "chat", '
        '"similarity_threshold": 0.7}]\'. The most specific rule that sets a '
        "field wins; SetSemanticPolicy changes them at run time.",
    )
    shadow_agreement_similarity: float = Field(
        default=0.92,
        gt=0,
        le=1,
        description="Shadow mode: the fresh answer agrees with the shadow hit's "
        "when their texts are equal (whitespace and case aside) or their "
        "embeddings' cosine similarity reaches this bound. 0.92 for the static "
        "embedder: on the read pair sets as many pairs reach it as reach 0.9 "
        "under MiniLM (bench/results/static_embedder.md); stricter, not looser, "
        "for 'minilm'.",
    )
    pair_judge: bool = Field(
        default=False,
        description="Ask the learned pair judge (a 3-layer MiniLM cross-encoder, "
        "in process: a 17 MB model, 2.6 ms p50 per lookup that reaches it) about "
        "the most similar candidate that passed every veto of the verification "
        "guard but whose words the guard could not pair up; without it such a "
        "candidate is rejected. Off by default: on blind set 2026-12d it raised "
        "paraphrase hits from 7.0% to 11.6% and false hits from 0.5% to 1.0% "
        "(docs/cache.md), with MiniLM nominating the candidates: pair it with "
        "embedding_backend 'minilm', whose candidates include the low-overlap "
        "rewordings the judge exists for and the static table ranks below the "
        "threshold. Vetoes (language, numbers, quotes, code, negation, order) "
        "stay hard either way.",
    )
    pair_judge_threshold: float = Field(
        default=DEFAULT_JUDGE_THRESHOLD,
        gt=0,
        le=1,
        description="Least judge score that serves a candidate (docs/cache.md "
        "gives the paraphrase and false-hit rates it was chosen at).",
    )
    semantic_top_k: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Candidates above the threshold checked by the verification "
        "guard; the most similar verified one wins.",
    )
    semantic_max_temperature: float = Field(
        default=1.0,
        ge=0,
        le=2,
        description="Requests above this temperature (unset is OpenAI's 1.0) use "
        "the exact tier only.",
    )
    semantic_max_input_chars: int = Field(
        default=1000,
        ge=1,
        description="Longer inputs use the exact tier only: the local model reads "
        "256 tokens, so a longer text could differ where it does not look.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("default_ttl_seconds must not exceed max_ttl_seconds")
        routes = [(rule.tenant_id, rule.request_type) for rule in self.semantic_rules]
        if len(routes) != len(set(routes)):
            raise ValueError("semantic_rules has two rules for the same route")
        if self.embedding_backend == "openai" and not (
            self.openai_api_key.get_secret_value()
        ):
            raise ValueError("embedding_backend 'openai' needs openai_api_key")
        return self
