"""Settings of the cache service, read from ``TOLLGATE_CACHE_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.settings import ServerSettings

DEFAULT_PORT = 50053
# Calibrated on bench/data/cache_pairs.jsonl by bench/cache_quality.py: the lowest
# threshold at which the guard lets no near-miss of the calibration half through
# (see bench/results/cache_quality.md).
CALIBRATED_THRESHOLD = 0.79


class CacheSettings(ServerSettings):
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
    embedding_backend: Literal["local", "openai"] = Field(
        default="local",
        description="Embeddings: 'local' (all-MiniLM-L6-v2, int8 ONNX, in process) "
        "or 'openai' (the embeddings endpoint at openai_base_url).",
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
        description="Minimum cosine similarity of a semantic candidate. Calibrated "
        "for the local model; recalibrate with bench/cache_quality.py for another.",
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
        if self.embedding_backend == "openai" and not (
            self.openai_api_key.get_secret_value()
        ):
            raise ValueError("embedding_backend 'openai' needs openai_api_key")
        return self
