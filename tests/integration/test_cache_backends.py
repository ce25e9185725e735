"""The cache's real backends: Redis, a Qdrant server (local-mode stand-in), Qdrant
Edge with its background optimization, and the OpenAI embeddings endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from threading import Event
from typing import Any

import grpc
import openai
import pytest
import redis.asyncio as aioredis
from qdrant_client import AsyncQdrantClient
from qdrant_edge import CountRequest, Point, UpdateOperation
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb

from services.cache.adapters import qdrant_edge
from services.cache.adapters.openai_embedder import OpenAIEmbedder
from services.cache.adapters.points import (
    FINGERPRINT_FIELD,
    SCOPE_FIELD,
    candidate,
    point_id,
    to_payload,
)
from services.cache.adapters.qdrant_edge import IndexLockedError, QdrantEdgeIndex
from services.cache.adapters.qdrant_server import QdrantServerIndex
from services.cache.adapters.redis_store import RedisExactStore
from services.cache.app import build_app
from services.cache.config import CacheSettings
from services.cache.domain import (
    Answer,
    CacheableRequest,
    CacheEntry,
    SemanticScope,
    Usage,
    exact_key,
)
from services.cache.ports import VectorIndex
from services.core.errors import BackendUnavailableError
from services.core.metrics import REGISTRY
from services.simulator.app import RunningSimulator, start_simulator
from services.simulator.config import SimulatorSettings
from tests.backends import RedisServer
from tests.conftest import ServeApp
from tests.grpc_helpers import error_details

pytestmark = pytest.mark.integration

SCOPE = SemanticScope("acme", "gpt-4.1-mini", "i" * 64, "p" * 64, "v1")


def _entry(text: str, *, tenant: str = "acme", expires_at: float = 2e9) -> CacheEntry:
    request = CacheableRequest(tenant_id=tenant, model="gpt-4.1-mini", input=text)
    return CacheEntry(
        key=exact_key(request),
        tenant_id=tenant,
        request_model="gpt-4.1-mini",
        answer=Answer(f"answer to {text}", "gpt-4.1-mini-2025", Usage(5, 1, 2)),
        created_at=1e9,
        expires_at=expires_at,
    )


def _unit(*values: float) -> list[float]:
    """``values`` normalised, padded with zeros to 8 dimensions when shorter."""
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values] + [0.0] * (8 - len(values))


# -- Redis


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisExactStore]:
    store = RedisExactStore.from_url(redis_server.url, f"test:{secrets.token_hex(4)}:")
    yield store
    await store.clear()
    await store.close()


async def test_redis_round_trip_and_absolute_expiry(
    redis_store: RedisExactStore, redis_server: RedisServer
) -> None:
    entry = _entry("q", expires_at=time.time() + 60)
    assert (await redis_store.put(entry)).stored
    assert await redis_store.get(entry.key) == entry
    client = aioredis.Redis.from_url(redis_server.url)
    ttl_ms = await client.pttl(f"{redis_store._prefix}e:{entry.key}")
    await redis_store.get(entry.key)  # a hit does not renew
    assert 0 < await client.pttl(f"{redis_store._prefix}e:{entry.key}") <= ttl_ms
    await client.aclose()
    usage = await redis_store.usage()
    assert usage.entries == 1 and usage.bytes_used > 0


async def test_redis_invalidation_by_key_tenant_model_and_all(
    redis_store: RedisExactStore,
) -> None:
    entries = [_entry("a"), _entry("b"), _entry("c", tenant="globex")]
    for entry in entries:
        await redis_store.put(entry)
    assert await redis_store.delete(entries[0].key)
    assert not await redis_store.delete(entries[0].key)
    assert await redis_store.delete_tenant("acme") == 1
    assert await redis_store.delete_model("gpt-4.1-mini-2025") == 1  # reported model
    await redis_store.put(entries[0])
    assert await redis_store.clear() == 1
    assert (await redis_store.usage()).entries == 0


async def test_redis_outage_is_backend_unavailable(redis_server: RedisServer) -> None:
    store = RedisExactStore.from_url(redis_server.url, "test:outage:")
    redis_server.stop()
    try:
        with pytest.raises(BackendUnavailableError):
            await store.get("k")
        assert not await store.ping()
    finally:
        redis_server.start()
        await store.close()


# -- vector indexes, run against both adapters


@pytest.fixture(params=["qdrant-edge", "qdrant"])
async def index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[VectorIndex]:
    opened: VectorIndex
    if request.param == "qdrant":
        opened = await QdrantServerIndex.open(
            AsyncQdrantClient(":memory:"), "cache", dimension=8
        )
    else:
        opened = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path)
    yield opened
    await opened.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")
async def test_hard_filters_expiry_and_deletes(index: VectorIndex) -> None:
    await index.upsert(SCOPE, "q1", _entry("q1"), _unit(1, 0), fingerprint="fp:q1")
    await index.upsert(
        SCOPE, "q2", _entry("q2", expires_at=100.0), _unit(1, 0.1), fingerprint="fp:q2"
    )
    other = dataclasses.replace(SCOPE, tenant_id="globex")
    await index.upsert(
        other, "q3", _entry("q3", tenant="globex"), _unit(1, 0), fingerprint="fp:q3"
    )
    # One hard filter different at a time: none of these is a candidate.
    for field in ("model", "instructions_hash", "parameters_hash", "embedding_version"):
        elsewhere = dataclasses.replace(SCOPE, **{field: "x"})
        await index.upsert(
            elsewhere, field, _entry(field), _unit(1, 0), fingerprint=f"fp:{field}"
        )
    found = await index.search(
        _unit(1, 0), SCOPE, now=200.0, limit=5, min_similarity=0.5
    )
    assert [c.query for c in found] == ["q1"]  # q2 expired, the rest other scopes
    assert found[0].entry == _entry("q1")
    assert found[0].fingerprint == "fp:q1"
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert not await index.search(
        _unit(0, 1), SCOPE, now=200.0, limit=5, min_similarity=0.5
    )
    assert await index.count() == 7
    assert await index.delete_expired(200.0) == 1
    assert await index.delete(_entry("q1").key)
    assert await index.delete_tenant("globex") == 1
    await index.upsert(SCOPE, "q1", _entry("q1"), _unit(1, 0), fingerprint="fp:q1")
    assert await index.delete_model("gpt-4.1-mini-2025") == 5
    await index.upsert(SCOPE, "q1", _entry("q1"), _unit(1, 0), fingerprint="fp:q1")
    assert await index.clear() == 1
    assert await index.count() == 0


async def test_expired_points_never_displace_a_live_one(index: VectorIndex) -> None:
    # The closer points expired: a search that left expiry to be checked after
    # the nearest were picked would find none of its one candidate alive.
    for n in range(3):
        await index.upsert(
            SCOPE,
            f"old{n}",
            _entry(f"old{n}", expires_at=100.0),
            _unit(1, n / 100),
            fingerprint=f"fp:old{n}",
        )
    await index.upsert(SCOPE, "live", _entry("live"), _unit(1, 0.3), fingerprint="")
    found = await index.search(
        _unit(1, 0), SCOPE, now=200.0, limit=1, min_similarity=0.5
    )
    assert [c.query for c in found] == ["live"]
    before_expiry = await index.search(
        _unit(1, 0), SCOPE, now=50.0, limit=1, min_similarity=0.5
    )
    assert [c.query for c in before_expiry] == ["old0"]


async def test_edge_optimizes_in_a_child_process_and_keeps_writes_made_meanwhile(
    tmp_path: Path,
) -> None:
    swapped_before = _rebuilds("swapped")
    index = await QdrantEdgeIndex.open(
        dimension=8, state_dir=tmp_path, optimize_after_points=1_000_000
    )
    try:
        for n in range(300):
            await index.upsert(
                SCOPE,
                f"q{n}",
                _entry(f"q{n}"),
                _unit(1, n / 300),
                fingerprint=f"fp:q{n}",
            )
        optimizing = asyncio.create_task(index.optimize())
        await asyncio.sleep(0)  # the copy is taken; now write during the build
        await index.upsert(
            SCOPE, "late", _entry("late"), _unit(0, 1), fingerprint="fp:late"
        )
        assert await index.delete(_entry("q0").key)
        assert await optimizing
        assert index.optimizations == 1
        assert _rebuilds("swapped") == swapped_before + 1
        assert await index.count() == 300
        found = await index.search(
            _unit(0, 1), SCOPE, now=0.0, limit=1, min_similarity=0.9
        )
        assert [c.query for c in found] == ["late"]
    finally:
        await index.close()
    # The private directory is gone.
    assert not await asyncio.to_thread(os.listdir, tmp_path)


async def test_an_edge_rebuild_walks_int8_copies_and_finds_the_exact_nearest(
    tmp_path: Path,
) -> None:
    # Enough 384-d points for a graph; the graph walks int8 copies of the vectors
    # and rescores the best on the originals, so the answer is an exact search's.
    generator = random.Random(7)
    vectors = [_random_unit(generator, 384) for _ in range(1_500)]
    index = await QdrantEdgeIndex.open(
        dimension=384, state_dir=tmp_path, optimize_after_points=1_000_000
    )
    try:
        for n, vector in enumerate(vectors):
            await index.upsert(SCOPE, f"q{n}", _entry(f"q{n}"), vector, fingerprint="")
        assert await index.optimize()
        quantized = list(
            index._root.glob("shard-*/segments/*/vector_storage/quantized.data")
        )
        assert quantized, "the rebuilt generation holds no int8 copies"
        for n in range(0, 1_500, 150):
            probe = _random_near(generator, vectors[n])
            found = await index.search(
                probe, SCOPE, now=0.0, limit=5, min_similarity=0.0
            )
            cosines = [
                sum(a * b for a, b in zip(probe, vector, strict=True))
                for vector in vectors
            ]
            nearest = max(range(len(vectors)), key=cosines.__getitem__)
            assert found[0].query == f"q{nearest}"
            # Scored on the original vectors, not on their int8 copies.
            assert found[0].similarity == pytest.approx(cosines[nearest], abs=1e-4)
    finally:
        await index.close()


def _random_unit(generator: random.Random, dimension: int) -> list[float]:
    return _unit(*(generator.gauss(0, 1) for _ in range(dimension)))


def _random_near(generator: random.Random, vector: list[float]) -> list[float]:
    return _unit(*(v + 0.02 * generator.gauss(0, 1) for v in vector))


def _rebuilds(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "tollgate_cache_index_rebuilds_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_a_failed_edge_rebuild_is_counted_and_the_live_index_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = await QdrantEdgeIndex.open(
        dimension=8, state_dir=tmp_path, optimize_after_points=1_000_000
    )
    failed_before = _rebuilds("failed")
    try:
        await index.upsert(SCOPE, "q", _entry("q"), _unit(1, 0), fingerprint="")
        # The child process that builds the graph exits 1.
        monkeypatch.setattr(sys, "executable", "/bin/false")
        assert not await index.optimize()
        monkeypatch.undo()
        assert _rebuilds("failed") == failed_before + 1
        found = await index.search(
            _unit(1, 0), SCOPE, now=0.0, limit=1, min_similarity=0.9
        )
        assert [c.query for c in found] == ["q"]
        # The abandoned copy is gone: only the live generation is left.
        assert [p.name for p in index._root.glob("shard-*")] == ["shard-000001"]
    finally:
        await index.close()


async def test_edge_serves_searches_between_chunks_of_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes made during a rebuild are replayed on the new generation a chunk at a
    # time, so a search made meanwhile waits for one chunk, not for all of them.
    monkeypatch.setattr(qdrant_edge, "REPLAY_CHUNK", 1)
    index = await QdrantEdgeIndex.open(
        dimension=8, state_dir=tmp_path, optimize_after_points=1_000_000
    )
    loop, loaded = asyncio.get_running_loop(), asyncio.Event()
    load_next = index._load_next

    def load_then_tell(target: Path) -> None:  # on the worker thread
        load_next(target)
        loop.call_soon_threadsafe(loaded.set)

    monkeypatch.setattr(index, "_load_next", load_then_tell)
    try:
        for n in range(10):
            await index.upsert(
                SCOPE, f"q{n}", _entry(f"q{n}"), _unit(1, n / 10), fingerprint=""
            )
        optimizing = asyncio.create_task(index.optimize())
        await asyncio.sleep(0)  # the copy is taken first
        for n in range(20):  # twenty updates to replay, one by one
            await index.upsert(
                SCOPE, f"late{n}", _entry(f"late{n}"), _unit(0, 1, n), fingerprint=""
            )
        async with asyncio.timeout(60):
            await loaded.wait()  # the copy is built and loaded
        generation = index._generation
        found = await index.search(
            _unit(1, 0), SCOPE, now=0.0, limit=1, min_similarity=0.9
        )
        served_before_the_swap = index._generation == generation
        assert await optimizing
        assert served_before_the_swap
        assert [c.query for c in found] == ["q0"]
        assert index._generation == generation + 1
        assert await index.count() == 30
        # Only the live generation's directory is left.
        assert sorted(p.name for p in index._root.glob("shard-*")) == [
            f"shard-{generation + 1:06d}"
        ]
    finally:
        await index.close()


async def test_a_rebuild_cancelled_as_it_swaps_still_retires_the_old_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # close() cancels the rebuild while the worker thread runs the last replay
    # chunk: the chunk swaps the copy in, but its answer never reaches the
    # rebuild, so the generation it swapped out must be retired another way.
    index = await QdrantEdgeIndex.open(
        dimension=8, state_dir=tmp_path / "index", optimize_after_points=1_000_000
    )
    loop, swapped, release = asyncio.get_running_loop(), asyncio.Event(), Event()
    replay_chunk = index._replay_chunk

    def swap_then_wait() -> tuple[object, Path] | None:  # on the worker thread
        retired = replay_chunk()
        if retired is not None:
            loop.call_soon_threadsafe(swapped.set)
            release.wait(timeout=30)
        return retired

    monkeypatch.setattr(index, "_replay_chunk", swap_then_wait)
    try:
        await index.upsert(SCOPE, "q", _entry("q"), _unit(1, 0), fingerprint="")
        optimizing = asyncio.create_task(index.optimize())
        await asyncio.sleep(0)  # the copy is taken first
        await index.upsert(SCOPE, "late", _entry("late"), _unit(0, 1), fingerprint="")
        async with asyncio.timeout(60):
            await swapped.wait()
        generation = index._generation
        optimizing.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await optimizing
        # Only the generation swapped in is left, and it holds both points.
        assert sorted(p.name for p in index._root.glob("shard-*")) == [
            f"shard-{generation:06d}"
        ]
        assert await index.count() == 2
    finally:
        await index.close()


async def test_an_edge_shard_copy_keeps_its_holes_and_loads(tmp_path: Path) -> None:
    index = await QdrantEdgeIndex.open(
        dimension=8, state_dir=tmp_path, optimize_after_points=1_000_000
    )
    try:
        for n in range(50):
            await index.upsert(
                SCOPE, f"q{n}", _entry(f"q{n}"), _unit(1, n), fingerprint=""
            )
        await index._call(index._live.flush)
        source = index._generation_path(index._generation)
        await asyncio.to_thread(qdrant_edge.copy_shard, source, tmp_path / "copy")
    finally:
        await index.close()

    files = [f for f in (tmp_path / "copy").rglob("*") if f.is_file()]
    apparent = sum(f.stat().st_size for f in files)
    allocated = sum(f.stat().st_blocks * 512 for f in files)
    # Qdrant preallocates its files (32 MB each for vectors, payloads and the
    # log); a copy that wrote them out would allocate all of it.
    assert apparent > 64 * 2**20
    assert allocated < apparent / 4
    copy = qdrant_edge._load_shard(tmp_path / "copy")
    try:
        assert copy.count(CountRequest(exact=True)) == 50
    finally:
        copy.close()


class _ThreadRecordingShard:
    """The shard itself, noting the thread each query and update ran on."""

    def __init__(self, shard: Any) -> None:
        self._shard = shard
        self.threads: list[tuple[str, int]] = []

    def update(self, operation: Any) -> None:
        self.threads.append(("update", threading.get_ident()))
        self._shard.update(operation)

    def query(self, request: Any) -> Any:
        self.threads.append(("query", threading.get_ident()))
        return self._shard.query(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shard, name)


async def test_edge_searches_and_writes_on_the_event_loop_when_its_lane_is_idle(
    tmp_path: Path,
) -> None:
    # Qdrant Edge holds the GIL through a query or an update: a hop to the
    # worker thread would hide nothing from the event loop.
    index = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path)
    recording = _ThreadRecordingShard(index._live)
    index._shard = recording  # type: ignore[assignment]
    try:
        await index.upsert(SCOPE, "q1", _entry("q1"), _unit(1, 1), fingerprint="")
        found = await index.search(
            _unit(1, 1), SCOPE, now=0.0, limit=1, min_similarity=0.99
        )
    finally:
        index._shard = recording._shard
        await index.close()

    assert [c.query for c in found] == ["q1"]
    loop_thread = threading.get_ident()
    assert recording.threads == [("update", loop_thread), ("query", loop_thread)]


async def test_edge_calls_queue_behind_a_slow_call_on_its_lane(tmp_path: Path) -> None:
    index = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path)
    recording = _ThreadRecordingShard(index._live)
    index._shard = recording  # type: ignore[assignment]
    release = Event()

    def slow() -> None:
        release.wait(timeout=10)

    try:
        slow_call = asyncio.create_task(index._call(slow))
        await asyncio.sleep(0)  # the slow call is on the worker thread
        write = asyncio.create_task(
            index.upsert(SCOPE, "q2", _entry("q2"), _unit(1, 2), fingerprint="")
        )
        await asyncio.sleep(0.05)
        assert not write.done()  # queued behind the slow call, not run beside it
        release.set()
        await slow_call
        await write
        found = await index.search(
            _unit(1, 2), SCOPE, now=0.0, limit=1, min_similarity=0.99
        )
    finally:
        release.set()
        index._shard = recording._shard
        await index.close()

    assert [c.query for c in found] == ["q2"]
    (kind, thread), *_ = recording.threads
    assert kind == "update" and thread != threading.get_ident()


class _FailingShard:
    """A shard whose queries and counts fail as Qdrant Edge fails: a bare Exception."""

    def query(self, request: Any) -> Any:
        raise Exception("segment is corrupted")

    def count(self, request: Any) -> Any:
        raise Exception("segment is corrupted")


async def test_an_edge_failure_is_unavailable_inline_and_on_the_thread(
    tmp_path: Path,
) -> None:
    index = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path)
    live = index._live
    index._shard = _FailingShard()  # type: ignore[assignment]
    try:
        with pytest.raises(BackendUnavailableError) as inline:
            await index.search(_unit(1), SCOPE, now=0.0, limit=1, min_similarity=0.5)
        with pytest.raises(BackendUnavailableError) as on_thread:
            await index.count()
    finally:
        index._shard = live
        await index.close()

    assert inline.value.reason == on_thread.value.reason == "SEMANTIC_INDEX_UNAVAILABLE"


async def test_a_persistent_edge_index_survives_reopening_and_is_exclusive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "semantic"
    index = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path, path=path)
    await index.upsert(SCOPE, "q", _entry("q"), _unit(1, 0), fingerprint="fp:q")
    with pytest.raises(IndexLockedError):
        await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path, path=path)
    await index.close()
    reopened = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path, path=path)
    assert await reopened.count() == 1
    await reopened.close()


async def test_an_edge_index_written_before_the_scope_digest_misses_its_old_points(
    tmp_path: Path,
) -> None:
    path = tmp_path / "semantic"
    index = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path, path=path)
    # What an older release wrote: the five hard filters, no scope digest, no
    # index on it.
    legacy = to_payload(SCOPE, "old", "", _entry("old"))
    del legacy[SCOPE_FIELD]
    shard = index._live
    shard.update(UpdateOperation.delete_field_index(SCOPE_FIELD))
    shard.update(
        UpdateOperation.upsert_points(
            [Point(point_id(_entry("old").key), _unit(1, 0), legacy)]
        )
    )
    await index.close()
    reopened = await QdrantEdgeIndex.open(dimension=8, state_dir=tmp_path, path=path)
    try:
        assert SCOPE_FIELD in reopened._live.info().payload_schema
        # The old point is a miss, never a hit found without every hard filter.
        assert not await reopened.search(
            _unit(1, 0), SCOPE, now=0.0, limit=5, min_similarity=0.5
        )
        await reopened.upsert(
            SCOPE, "new", _entry("new"), _unit(1, 0), fingerprint="fp:new"
        )
        found = await reopened.search(
            _unit(1, 0), SCOPE, now=0.0, limit=5, min_similarity=0.5
        )
        assert [c.query for c in found] == ["new"]
    finally:
        await reopened.close()


def test_a_point_stored_without_a_fingerprint_reads_as_having_none() -> None:
    payload = to_payload(SCOPE, "q", "fp:q", _entry("q"))
    assert candidate(payload, 0.9).fingerprint == "fp:q"
    del payload[FINGERPRINT_FIELD]  # what a release before fingerprints wrote
    older = candidate(payload, 0.9)
    assert (older.query, older.entry, older.fingerprint) == ("q", _entry("q"), "")


# -- OpenAI embeddings, against the simulator


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(
        SimulatorSettings(port=0, latency_ms=0)
    ) as running:
        yield running


async def test_openai_embeddings_from_the_simulator(
    simulator: RunningSimulator,
) -> None:
    client = openai.AsyncOpenAI(base_url=simulator.base_url, api_key="sk-test")
    embedder = OpenAIEmbedder(client, "text-embedding-3-small", 64)
    try:
        first, second, again = await asyncio.gather(
            embedder.embed(["hello"]),
            embedder.embed(["world"]),
            embedder.embed(["hello"]),
        )
        assert len(first[0]) == 64
        assert sum(x * x for x in first[0]) == pytest.approx(1.0)
        assert first == again and first != second
        assert embedder.version == "openai:text-embedding-3-small:64"
        assert await embedder.ping()
    finally:
        await embedder.close()


async def test_openai_embedding_failure_is_backend_unavailable() -> None:
    client = openai.AsyncOpenAI(
        base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_retries=0, timeout=1
    )
    embedder = OpenAIEmbedder(client, "text-embedding-3-small", 64)
    with pytest.raises(BackendUnavailableError):
        await embedder.embed(["hello"])
    assert not await embedder.ping()
    await embedder.close()


# -- the service on Redis


async def test_the_service_on_redis_serves_hits_and_is_unavailable_without_it(
    serve_app: ServeApp, redis_server: RedisServer
) -> None:
    settings = CacheSettings(
        port=0,
        exact_backend="redis",
        redis_url=redis_server.url,
        redis_key_prefix=f"test:{secrets.token_hex(4)}:",
        semantic_backend="disabled",
    )
    running = await serve_app(await build_app(settings))
    request = cache_pb.CacheableRequest(tenant_id="acme", model="m", input="q")
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        await stub.Store(
            cache_pb.StoreRequest(
                request=request,
                response=cache_pb.CachedResponse(output_text="a"),
                complete=True,
            )
        )
        found = await stub.Lookup(cache_pb.LookupRequest(request=request))
        assert (found.hit, found.status) == (True, common_pb.CACHE_STATUS_EXACT)
        stats = await stub.GetStats(cache_pb.GetStatsRequest())
        assert (stats.exact_backend, stats.exact_entries) == ("redis", 1)
        redis_server.stop()
        try:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Lookup(cache_pb.LookupRequest(request=request))
        finally:
            redis_server.start()
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    info = error_details(raised.value)["google.rpc.ErrorInfo"]
    assert (info.reason, info.domain) == ("EXACT_STORE_UNAVAILABLE", "cache.tollgate")
