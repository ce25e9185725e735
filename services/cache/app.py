"""Wiring of the cache service: settings → tiers → domain → servicer."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import time
from collections.abc import Awaitable, Callable

import grpc
import structlog
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc

from services.cache import verification
from services.cache.adapters.memory import MemoryExactStore
from services.cache.config import CacheSettings
from services.cache.domain import (
    PolicyRule,
    ResponseCache,
    SemanticControl,
    SemanticMode,
    SemanticPolicy,
    SemanticTier,
)
from services.cache.ports import Embedder, ExactStore, PairJudge, VectorIndex
from services.cache.servicer import CacheServicer
from services.core.clock import Clock, SystemClock
from services.core.errors import BackendUnavailableError
from services.core.server import ServiceApp

SERVICE_NAME = cache_pb.DESCRIPTOR.services_by_name["CacheService"].full_name

_log = structlog.get_logger("tollgate.cache")


def _exact_store(settings: CacheSettings) -> ExactStore:
    if settings.exact_backend == "redis":
        from services.cache.adapters.redis_store import RedisExactStore

        return RedisExactStore.from_url(settings.redis_url, settings.redis_key_prefix)
    return MemoryExactStore(settings.exact_max_bytes)


async def _embedder(settings: CacheSettings) -> Embedder:
    # Backends are imported when chosen: the openai and qdrant-client packages take
    # seconds to import, which the embedded default should not pay at start-up.
    if settings.embedding_backend == "openai":
        import openai

        from services.cache.adapters.openai_embedder import OpenAIEmbedder

        client = openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            max_retries=1,
            timeout=5.0,
        )
        return OpenAIEmbedder(
            client,
            settings.openai_embedding_model,
            settings.openai_embedding_dimensions,
        )
    if settings.embedding_backend == "static":
        from services.cache.adapters.static_embedder import StaticEmbedder

        # Reading and checking the 23 MB table: off the event loop.
        return await asyncio.to_thread(StaticEmbedder.load)
    from services.cache.adapters.onnx_embedder import OnnxEmbedder

    # Reading and checking 23 MB and building the session: off the event loop.
    return await asyncio.to_thread(OnnxEmbedder.load)


async def _index(settings: CacheSettings, dimension: int) -> VectorIndex:
    if settings.semantic_backend == "qdrant":
        from qdrant_client import AsyncQdrantClient

        from services.cache.adapters.qdrant_server import QdrantServerIndex

        api_key = settings.qdrant_api_key
        client = AsyncQdrantClient(
            url=settings.qdrant_url,
            api_key=api_key.get_secret_value() if api_key else None,
            timeout=2,
        )
        return await QdrantServerIndex.open(
            client, settings.qdrant_collection, dimension
        )
    from services.cache.adapters.qdrant_edge import QdrantEdgeIndex

    return await QdrantEdgeIndex.open(
        dimension=dimension,
        state_dir=settings.state_dir,
        path=settings.semantic_index_path,
        optimize_after_points=settings.optimize_after_points,
    )


def release_freed_memory() -> None:
    """Hand the heap pages freed so far back to the system (glibc's malloc_trim).

    Building the onnxruntime session allocates about 60 MB of temporaries (the
    parsed model and its optimisation passes) that are freed but kept by glibc's
    allocator, resident for the life of the process. A no-op off glibc.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


async def _pair_judge(settings: CacheSettings) -> PairJudge | None:
    if not settings.pair_judge:
        return None
    from services.cache.adapters.onnx_pair_judge import OnnxPairJudge

    return await asyncio.to_thread(OnnxPairJudge.load)


async def build_semantic_tier(settings: CacheSettings) -> SemanticTier | None:
    """The embedder and index the settings name, or ``None`` when disabled."""
    if settings.semantic_backend == "disabled":
        return None
    started = time.monotonic()
    embedder = await _embedder(settings)
    index = await _index(settings, embedder.dimension)
    judge = await _pair_judge(settings)
    await asyncio.to_thread(verification.load_tables)
    release_freed_memory()
    _log.info(
        "semantic_tier_ready",
        index=index.backend,
        embedding_version=embedder.version,
        load_ms=round((time.monotonic() - started) * 1000),
    )
    policy = SemanticPolicy(
        similarity_threshold=settings.similarity_threshold,
        top_k=settings.semantic_top_k,
        max_temperature=settings.semantic_max_temperature,
        max_input_chars=settings.semantic_max_input_chars,
        judge_threshold=settings.pair_judge_threshold,
    )
    return SemanticTier(embedder, index, policy, judge)


def semantic_control(settings: CacheSettings) -> SemanticControl:
    """The default mode and threshold and the per-route rules the settings name."""
    return SemanticControl(
        SemanticMode(settings.semantic_mode),
        settings.similarity_threshold,
        [
            PolicyRule(
                tenant_id=rule.tenant_id,
                request_type=rule.request_type,
                mode=SemanticMode(rule.mode) if rule.mode else None,
                similarity_threshold=rule.similarity_threshold,
            )
            for rule in settings.semantic_rules
        ],
    )


async def build_cache(
    settings: CacheSettings, clock: Clock | None = None
) -> ResponseCache:
    """The domain with the tiers the settings name.

    Args:
        settings: the service's settings.
        clock: the time source; the system clock unless a test passes a fake.
    """
    return ResponseCache(
        _exact_store(settings),
        clock or SystemClock(),
        default_ttl_seconds=settings.default_ttl_seconds,
        max_ttl_seconds=settings.max_ttl_seconds,
        semantic=await build_semantic_tier(settings),
        control=semantic_control(settings),
        agreement_similarity=settings.shadow_agreement_similarity,
    )


async def build_app(settings: CacheSettings, clock: Clock | None = None) -> ServiceApp:
    """Build the cache service with the tiers its settings name.

    Args:
        settings: the service's settings.
        clock: the time source; the system clock unless a test passes a fake.
    """
    return serve_cache(await build_cache(settings, clock), settings)


def serve_cache(cache: ResponseCache, settings: CacheSettings) -> ServiceApp:
    """The service around ``cache``: servicer, sweeper, health checks, shutdown."""
    store, semantic = cache.exact_store, cache.semantic
    servicer = CacheServicer(cache, settings.similarity_threshold)
    sweeper: asyncio.Task[None] | None = None

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(settings.sweep_interval_seconds)
            try:
                await cache.sweep()
            except BackendUnavailableError as error:
                _log.warning("cache_sweep_failed", reason=error.reason)

    async def on_start() -> None:
        nonlocal sweeper
        sweeper = asyncio.create_task(sweep_forever())

    async def on_stop() -> None:
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await store.close()
        if semantic is not None:
            await semantic.index.close()
            await semantic.embedder.close()
            if semantic.judge is not None:
                await semantic.judge.close()

    def register(server: grpc.aio.Server) -> None:
        cache_pb2_grpc.add_CacheServiceServicer_to_server(servicer, server)

    health_checks: dict[str, Callable[[], Awaitable[bool]]] = {
        "exact_store": store.ping
    }
    if semantic is not None:
        health_checks["vector_index"] = semantic.index.ping
        health_checks["embedder"] = semantic.embedder.ping
    return ServiceApp(
        name="cache",
        service_names=[SERVICE_NAME],
        register=register,
        health_checks=health_checks,
        on_start=on_start,
        on_stop=on_stop,
        # Every other RPC is the gateway's: its callers prove a service identity.
        identity=settings.identity_policy(),
        # Statistics an operator may read with an admin key too.
        operator_methods=frozenset({f"/{SERVICE_NAME}/GetStats"}),
        # Dropping cached answers and changing what the semantic tier serves are
        # an operator's acts, and the rules name tenants: admin key only.
        admin_methods=frozenset(
            {
                f"/{SERVICE_NAME}/Invalidate",
                f"/{SERVICE_NAME}/SetSemanticPolicy",
                f"/{SERVICE_NAME}/GetSemanticPolicy",
            }
        ),
    )
