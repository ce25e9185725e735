"""The embedded semantic index: Qdrant Edge (Qdrant's engine) in this process.

Qdrant Edge allows one handle per storage directory, and its ``optimize`` (the HNSW
build: seconds at 10k points, minutes at 100k) holds the GIL for its whole run, so
it must never run in the serving process. Searches over unoptimized segments are
exact scans and slow down as points accumulate (≈30 ms at 100k here). So this
adapter rebuilds the index in a child process on a copy, and swaps:

1. once ``optimize_after_points`` points were written, the live shard is flushed
   and its directory copied to the next generation (``shard-000002``) by GNU ``cp``,
   holes kept as holes (:func:`copy_shard`); from then on every write is applied to
   the live shard and also recorded;
2. a child process (``python -m services.cache.adapters.edge_optimize``, niced,
   one indexing thread) opens the copy, optimizes it and closes it;
3. the copy is loaded and the recorded writes are replayed on it,
   :data:`REPLAY_CHUNK` at a time so that searches are served between chunks;
   with the last chunk it becomes the live shard and ``CURRENT`` names it; the
   old generation is closed and deleted off the worker thread.

Every call on a served shard (and on the copy being caught up) runs in order on
one lane, so a search never meets a half-made swap, and a write is either in the
copy or in the replay log; only a retired generation is closed elsewhere. The lane
is a worker thread, but a search or a write that finds it idle runs on the calling
(event loop) thread at once: Qdrant Edge holds the GIL for the whole of a query
or an update, so the thread hid nothing from the event loop and cost two thread
hand-offs per call (``bench/results/hot_path_edge_inline_int8_c1.json``). The
slow calls (flush and copy, load, replay, deletions, counts) stay on the thread,
and while one is there, searches and writes queue behind it. A search or a write
on an idle lane therefore does not suspend the calling task.

Storage: with a configured path the index persists across restarts (``CURRENT``
names the live generation; only one process may open it). Without one, each process
keeps a private directory under the state directory, removed on close; directories
left by processes that died are removed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    KeywordIndexParams,
    MatchValue,
    PayloadSchemaType,
    Point,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RangeFloat,
    ScalarQuantizationConfig,
    ScalarType,
    SearchParams,
    UpdateOperation,
)

from services.cache.adapters.points import (
    EXPIRES_FIELD,
    KEYWORD_FIELDS,
    SCOPE_FIELD,
    TENANT_FIELD,
    candidate,
    point_id,
    scope_key,
    to_payload,
)
from services.cache.domain import CacheEntry, SemanticCandidate, SemanticScope
from services.cache.ports import Vector
from services.core import metrics
from services.core.errors import BackendUnavailableError

if TYPE_CHECKING:
    from qdrant_edge import ConditionType

_log = structlog.get_logger("tollgate.cache.qdrant_edge")

T = TypeVar("T")
Operation = Callable[[], UpdateOperation]

CURRENT_FILE = "CURRENT"
EPHEMERAL_PREFIX = "semantic-"
# Most recorded writes replayed on the new generation in one turn of the worker
# thread: a search waits for one chunk, not for every write of the rebuild.
REPLAY_CHUNK = 64
# Segments above this size (KB; a 384-d point is 1.5 KB) get an HNSW graph.
_INDEXING_THRESHOLD_KB = 2000
# A search whose filter matches more than this (KB, about 670 points) walks the
# graph; fewer are scored one by one. Qdrant's default, 10,000, scanned every
# segment of up to 6,600 points of one scope.
_FULL_SCAN_KB = 1000
# Segments kept before the smallest are merged (Qdrant's default, 0, means one
# per core: here two, so every rebuild re-indexed every point).
_SEGMENTS = 8
# A graph is walked on int8 copies of the vectors (kept in memory, a quarter of
# the float32 size), and the best twice-the-limit found are rescored on the
# originals: about a third less CPU per new prompt at the same recall.
_QUANTIZATION = ScalarQuantizationConfig(
    ScalarType.Int8, quantile=0.99, always_ram=True
)
SEARCH_PARAMS = SearchParams(
    quantization=QuantizationSearchParams(rescore=True, oversampling=2.0)
)


class IndexLockedError(RuntimeError):
    """Another process holds the shard directory."""


def shard_config(dimension: int) -> EdgeConfig:
    """The configuration of a new shard of ``dimension``-d cosine vectors.

    Tuned for the cache's pattern, one search and one write per new prompt
    (``bench/results/semantic_index_tuning.md``): each rebuild indexes only the
    segment written since the last (up to :data:`_SEGMENTS` segments are kept
    rather than merged into two and re-indexed whole), a graph is searched once a
    scope's points pass :data:`_FULL_SCAN_KB`, ``ef_construct`` 64 (also the
    search's ``ef``) keeps recall@5 where 100 had it, and the graph is walked on
    int8 copies of the vectors, rescored on the originals (:data:`SEARCH_PARAMS`).
    """
    return EdgeConfig(
        vectors=EdgeVectorParams(size=dimension, distance=Distance.Cosine),
        # One indexing thread: the child process that builds the graph must leave
        # the other core to the service.
        hnsw_config=HnswIndexConfig(
            m=16,
            ef_construct=64,
            full_scan_threshold=_FULL_SCAN_KB,
            max_indexing_threads=1,
        ),
        optimizers=EdgeOptimizersConfig(
            indexing_threshold=_INDEXING_THRESHOLD_KB,
            default_segment_number=_SEGMENTS,
        ),
        quantization_config=_QUANTIZATION,
        # Searches are small; a second search thread would compete with serving.
        max_search_threads=1,
    )


def create_shard(path: Path, config: EdgeConfig) -> EdgeShard:
    """A new shard at ``path`` with the cache's payload indexes."""
    shard = EdgeShard.create(str(path), config)
    shard.update(
        UpdateOperation.create_field_index(
            TENANT_FIELD, KeywordIndexParams(is_tenant=True)
        )
    )
    for name in KEYWORD_FIELDS:
        if name != TENANT_FIELD:
            shard.update(
                UpdateOperation.create_field_index(name, PayloadSchemaType.Keyword)
            )
    shard.update(
        UpdateOperation.create_field_index(EXPIRES_FIELD, PayloadSchemaType.Float)
    )
    shard.flush()
    return shard


def _load_shard(path: Path) -> EdgeShard:
    try:
        shard = EdgeShard.load(str(path))
    except Exception as error:  # qdrant_edge raises a bare Exception
        if "WouldBlock" in str(error):
            raise IndexLockedError(
                f"the semantic index {path} is open in another process; give each "
                "cache process its own path, or use a Qdrant server"
            ) from error
        raise
    if SCOPE_FIELD not in shard.info().payload_schema:
        # A shard written before searches filtered on the scope digest.
        shard.update(
            UpdateOperation.create_field_index(SCOPE_FIELD, PayloadSchemaType.Keyword)
        )
    return shard


def copy_shard(source: Path, target: Path) -> None:
    """Copy the shard directory ``source`` to ``target`` (which must not exist).

    A shard's files are mostly preallocated holes (vectors, payloads and the log
    are created 32 MB long). ``shutil.copytree`` writes every hole out as zeros, and
    in the serving process each of its system calls waits for the GIL behind the
    event loop, with every search queued behind it on the index's one thread.
    GNU ``cp`` copies the written blocks only, in a process of its own
    (``bench/index_rebuild_stall.py``).
    """
    if sys.platform != "linux":
        shutil.copytree(source, target)
        return
    copied = subprocess.run(
        ["cp", "-a", "--sparse=always", str(source), str(target)],
        capture_output=True,
        check=False,
    )
    if copied.returncode != 0:
        error = copied.stderr.decode(errors="replace")
        raise OSError(f"copying the semantic index failed: {error}")


def _retire(shard: EdgeShard, path: Path) -> None:
    """Close a generation no longer served and delete its directory."""
    shard.close()
    shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_directories(state_dir: Path) -> int:
    """Remove private index directories of processes that no longer run."""
    removed = 0
    if not state_dir.is_dir():
        return removed
    for child in state_dir.glob(f"{EPHEMERAL_PREFIX}*"):
        pid_text = child.name.removeprefix(EPHEMERAL_PREFIX).split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed


def _guarded(work: Callable[[], T]) -> T:
    """``work()``, a failure of Qdrant Edge raised as BackendUnavailableError."""
    try:
        return work()
    except BackendUnavailableError:
        raise
    except Exception as error:  # qdrant_edge raises a bare Exception
        raise BackendUnavailableError(
            f"qdrant edge failed: {type(error).__name__}",
            reason="SEMANTIC_INDEX_UNAVAILABLE",
        ) from error


def _equal(**fields: str) -> list[ConditionType]:
    return [
        FieldCondition(key=name, match=MatchValue(value))
        for name, value in fields.items()
    ]


class QdrantEdgeIndex:
    """A :class:`~services.cache.ports.VectorIndex` on an in-process Edge shard.

    Use :meth:`open`.
    """

    backend = "qdrant-edge"

    def __init__(
        self,
        root: Path,
        dimension: int,
        *,
        optimize_after_points: int,
        ephemeral: bool,
    ) -> None:
        self._root = root
        self._dimension = dimension
        self._optimize_after = optimize_after_points
        self._ephemeral = ephemeral
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="qdrant-edge")
        self._shard: EdgeShard | None = None
        self._generation = 0
        self._written = 0
        # Writes made while a copy is being optimized, to replay on the copy.
        self._replay: list[Operation] | None = None
        # The optimized copy while the writes are replayed on it, and how many.
        self._next: EdgeShard | None = None
        self._replayed = 0
        # The generation the last replay chunk swapped out, until it is retired.
        self._retired: tuple[EdgeShard, Path] | None = None
        self._optimizer: asyncio.Task[bool] | None = None
        self.optimizations = 0
        # The last call given to the worker thread: the lane is idle once it is done.
        self._last_on_thread: Future[Any] | None = None

    @classmethod
    async def open(
        cls,
        *,
        dimension: int,
        state_dir: Path,
        path: Path | None = None,
        optimize_after_points: int = 5000,
    ) -> QdrantEdgeIndex:
        """Open the persistent index at ``path``, or a private one in ``state_dir``.

        Raises:
            IndexLockedError: another process has ``path`` open.
        """
        if path is None:
            name = f"{EPHEMERAL_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            root, ephemeral = state_dir / name, True
        else:
            root, ephemeral = path, False
        index = cls(
            root,
            dimension,
            optimize_after_points=optimize_after_points,
            ephemeral=ephemeral,
        )
        await index._on_thread(index._open_sync)
        return index

    def _generation_path(self, generation: int) -> Path:
        return self._root / f"shard-{generation:06d}"

    def _open_sync(self) -> None:
        if self._ephemeral:
            remove_stale_directories(self._root.parent)
        self._root.mkdir(parents=True, exist_ok=True)
        current = self._root / CURRENT_FILE
        if current.exists():
            self._generation = int(current.read_text().strip())
            self._shard = _load_shard(self._generation_path(self._generation))
        else:
            self._generation = 1
            self._shard = create_shard(
                self._generation_path(self._generation),
                shard_config(self._dimension),
            )
            self._write_current()
        # A crash during an optimization leaves a half-made next generation.
        for child in self._root.glob("shard-*"):
            if child != self._generation_path(self._generation):
                shutil.rmtree(child, ignore_errors=True)

    def _write_current(self) -> None:
        temporary = self._root / f"{CURRENT_FILE}.tmp"
        temporary.write_text(f"{self._generation}\n")
        temporary.replace(self._root / CURRENT_FILE)

    @property
    def _live(self) -> EdgeShard:
        if self._shard is None:
            raise BackendUnavailableError("the semantic index is closed")
        return self._shard

    def _on_thread(self, work: Callable[[], T]) -> asyncio.Future[T]:
        future = self._executor.submit(work)
        self._last_on_thread = future
        return asyncio.wrap_future(future)

    async def _call(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the lane's worker thread, after every call before it."""
        return await self._on_thread(lambda: _guarded(work))

    async def _call_now(self, work: Callable[[], T]) -> T:
        """Run ``work`` on this thread when the lane is idle, else queue it.

        For the short calls: a search or a write holds the GIL as long on the
        worker thread as here.
        """
        last = self._last_on_thread
        if last is not None and not last.done():
            return await self._call(work)
        return _guarded(work)

    def _apply(self, operation: Operation) -> None:
        self._live.update(operation())
        if self._replay is not None:
            self._replay.append(operation)

    def _count(self, condition: Filter | None = None) -> int:
        return int(self._live.count(CountRequest(exact=True, filter=condition)))

    def _delete_counted(self, condition: Filter) -> int:
        removed = self._count(condition)
        if removed:
            self._apply(lambda: UpdateOperation.delete_points_by_filter(condition))
        return removed

    async def upsert(
        self,
        scope: SemanticScope,
        query: str,
        entry: CacheEntry,
        vector: Vector,
        *,
        fingerprint: str,
    ) -> None:
        """Insert or replace the point of ``entry.key``; may start an optimization.

        Written at once when the index's lane is idle; otherwise after the slow
        call on its worker thread. Returns once the point is written.
        """
        point = Point(
            point_id(entry.key),
            list(vector),
            to_payload(scope, query, fingerprint, entry),
        )
        await self._call_now(
            lambda: self._apply(lambda: UpdateOperation.upsert_points([point]))
        )
        self._written += 1
        if self._written >= self._optimize_after and not self.optimizing:
            self._written = 0
            self._optimizer = asyncio.create_task(self._optimize())

    async def search(
        self,
        vector: Vector,
        scope: SemanticScope,
        *,
        now: float,
        limit: int,
        min_similarity: float,
    ) -> list[SemanticCandidate]:
        """The most similar live points of ``scope``, under hard filters.

        The search filters on the scope alone: checking expiry at every point it
        visits cost a third of a scan. When an expired point is among those found,
        it may have displaced a live one, so the search runs again with expiry in
        the filter; the answer is the filtered search's either way.
        """
        in_scope = _equal(**{SCOPE_FIELD: scope_key(scope)})
        query = Query.Nearest(list(vector))

        def search(condition: Filter) -> list[SemanticCandidate]:
            request = QueryRequest(
                limit=limit,
                query=query,
                filter=condition,
                with_payload=True,
                score_threshold=min_similarity,
                params=SEARCH_PARAMS,
            )
            return [
                candidate(dict(point.payload or {}), point.score)
                for point in self._live.query(request)
            ]

        def work() -> list[SemanticCandidate]:
            found = search(Filter(must=in_scope))
            if all(c.entry.expires_at > now for c in found):
                return found
            live = FieldCondition(key=EXPIRES_FIELD, range=RangeFloat(gt=now))
            return search(Filter(must=[*in_scope, live]))

        return await self._call_now(work)

    async def delete(self, key: str) -> bool:
        """Remove the point of ``key``."""
        identifier = point_id(key)

        def work() -> bool:
            if not self._live.retrieve([identifier], False, False):
                return False
            self._apply(lambda: UpdateOperation.delete_points([identifier]))
            return True

        return await self._call(work)

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every point of ``tenant_id``."""
        return await self._call(
            lambda: self._delete_counted(Filter(must=_equal(tenant_id=tenant_id)))
        )

    async def delete_model(self, model: str) -> int:
        """Remove every point requested from or produced by ``model``."""
        condition = Filter(
            should=[
                FieldCondition(key="model", match=MatchValue(model)),
                FieldCondition(key="answer_model", match=MatchValue(model)),
            ]
        )
        return await self._call(lambda: self._delete_counted(condition))

    async def delete_expired(self, now: float) -> int:
        """Remove every point whose ``expires_at`` is at or before ``now``."""
        condition = Filter(
            must=[FieldCondition(key=EXPIRES_FIELD, range=RangeFloat(lte=now))]
        )
        return await self._call(lambda: self._delete_counted(condition))

    async def clear(self) -> int:
        """Remove every point."""
        return await self._call(lambda: self._delete_counted(Filter()))

    async def count(self) -> int:
        """Points in the live shard."""
        return await self._call(self._count)

    async def ping(self) -> bool:
        """Whether the shard answers a count."""
        try:
            await self.count()
        except BackendUnavailableError:
            return False
        return True

    @property
    def optimizing(self) -> bool:
        """Whether an optimization is under way."""
        return self._optimizer is not None and not self._optimizer.done()

    async def optimize(self) -> bool:
        """Optimize now, or wait for the optimization under way.

        Returns whether a new generation was swapped in.
        """
        if not self.optimizing:
            self._optimizer = asyncio.create_task(self._optimize())
        assert self._optimizer is not None
        return await self._optimizer

    async def _optimize(self) -> bool:
        try:
            swapped = await self._rebuild()
        except Exception:  # not a cancellation: the index is closing
            metrics.CACHE_INDEX_REBUILDS.labels("failed").inc()
            raise
        metrics.CACHE_INDEX_REBUILDS.labels("swapped" if swapped else "failed").inc()
        return swapped

    async def _rebuild(self) -> bool:
        target = await self._call(self._snapshot)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.cache.adapters.edge_optimize",
                str(target),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, stderr = await process.communicate()
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
            if process.returncode != 0:
                _log.error(
                    "semantic_index_optimize_failed",
                    returncode=process.returncode,
                    stderr=stderr.decode(errors="replace")[-500:],
                )
                await self._call(lambda: self._abandon(target))
                return False
            await self._call(lambda: self._load_next(target))
            retired = None
            while retired is None:
                retired = await self._call(self._replay_chunk)
            self._retired = None
        except BaseException:
            with contextlib.suppress(Exception):
                await self._call(lambda: self._abandon(target))
            raise
        # Off the worker thread: searches need not wait for the old one to go.
        await asyncio.to_thread(_retire, *retired)
        self.optimizations += 1
        _log.info("semantic_index_optimized", generation=self._generation)
        return True

    def _snapshot(self) -> Path:
        self._live.flush()
        target = self._generation_path(self._generation + 1)
        shutil.rmtree(target, ignore_errors=True)
        copy_shard(self._generation_path(self._generation), target)
        self._replay = []
        return target

    def _abandon(self, target: Path) -> None:
        # Cancelled while the last chunk swapped the copy in: the chunk's answer
        # never arrived, so the generation it retired is closed here.
        if self._retired is not None:
            _retire(*self._retired)
            self._retired = None
        self._replay = None
        if self._next is not None:
            self._next.close()
            self._next = None
        if target != self._generation_path(self._generation):  # not swapped in
            shutil.rmtree(target, ignore_errors=True)

    def _load_next(self, target: Path) -> None:
        self._next, self._replayed = _load_shard(target), 0

    def _replay_chunk(self) -> tuple[EdgeShard, Path] | None:
        """Replay the next recorded writes on the optimized copy.

        With the last chunk the copy is swapped in, and the retired generation
        (its shard and directory) returned; until then, None.
        """
        assert self._next is not None and self._replay is not None
        chunk = self._replay[self._replayed : self._replayed + REPLAY_CHUNK]
        for operation in chunk:
            self._next.update(operation())
        self._replayed += len(chunk)
        if self._replayed < len(self._replay):
            return None
        self._retired = (self._live, self._generation_path(self._generation))
        self._shard, self._next, self._replay = self._next, None, None
        self._generation += 1
        self._write_current()
        return self._retired

    async def close(self) -> None:
        """Stop an optimization, then flush and close; a private index is deleted."""
        if self._optimizer is not None and not self._optimizer.done():
            self._optimizer.cancel()
            with contextlib.suppress(asyncio.CancelledError, BackendUnavailableError):
                await self._optimizer

        def shut() -> None:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None
            if self._ephemeral:
                shutil.rmtree(self._root, ignore_errors=True)

        await self._on_thread(shut)
        self._executor.shutdown(wait=True)
