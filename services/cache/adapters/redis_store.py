"""The exact tier in Redis, shared by every cache replica.

Each entry is one string key ``<prefix>e:<key>`` holding the entry as JSON, written
with ``SET ... PXAT``: Redis expires it at the entry's absolute ``expires_at``, and
a hit never renews it. Invalidation by tenant and by model uses sets of keys
(``<prefix>t:<tenant>``, ``<prefix>m:<model>``) written in the same Lua call as the
entry; a set expires with its last entry (``PEXPIREAT ... GT``), and a member
whose entry is gone costs nothing (``DEL`` counts only what it removed).

Bytes are Redis's business: bound the instance with ``maxmemory`` and an eviction
policy such as ``allkeys-lru`` (or ``volatile-lru``, since every entry has a TTL).
The usage this store reports is the instance's ``used_memory`` against its
``maxmemory`` (0 when unbounded, or when ``CONFIG GET`` is not allowed), and its
evictions are Redis's ``evicted_keys``. So ``put`` never evicts by itself and never
refuses for size.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from services.cache.domain import Answer, CacheEntry, Usage
from services.cache.ports import PutResult, StoreUsage
from services.core.conversation import FinishReason, ToolCall
from services.core.errors import BackendUnavailableError

T = TypeVar("T")

# KEYS: entry, tenant set, request-model set, answer-model set.
# ARGV: key, JSON, expires_at in ms.
_PUT = """
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  if redis.call('PEXPIREAT', KEYS[i], ARGV[3], 'GT') == 0 then
    -- GT leaves a set without TTL alone: give it the entry's.
    if redis.call('PTTL', KEYS[i]) == -1 then
      redis.call('PEXPIREAT', KEYS[i], ARGV[3])
    end
  end
end
return 1
"""
# KEYS: a set. ARGV: the entry key prefix. Deletes the set's entries and the set.
_DELETE_SET = """
local removed = 0
local members = redis.call('SMEMBERS', KEYS[1])
for i = 1, #members, 500 do
  local batch = {}
  for j = i, math.min(i + 499, #members) do
    batch[#batch + 1] = ARGV[1] .. members[j]
  end
  removed = removed + redis.call('DEL', unpack(batch))
end
redis.call('DEL', KEYS[1])
return removed
"""


def _encode(entry: CacheEntry) -> str:
    usage = entry.answer.usage
    return json.dumps(
        {
            "key": entry.key,
            "tenant_id": entry.tenant_id,
            "request_model": entry.request_model,
            "output_text": entry.answer.output_text,
            "answer_model": entry.answer.model,
            "usage": [
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens,
            ],
            "tool_calls": [
                [call.id, call.name, call.arguments] for call in entry.answer.tool_calls
            ],
            "finish_reason": (
                entry.answer.finish_reason.value if entry.answer.finish_reason else None
            ),
            "created_at": entry.created_at,
            "expires_at": entry.expires_at,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _decode(raw: bytes | str) -> CacheEntry:
    data: dict[str, Any] = json.loads(raw)
    # Entries written before reasoning tokens and tool calls were kept lack them.
    input_tokens, cached_input_tokens, output_tokens, *reasoning = data["usage"]
    finish = data.get("finish_reason")
    return CacheEntry(
        key=data["key"],
        tenant_id=data["tenant_id"],
        request_model=data["request_model"],
        answer=Answer(
            output_text=data["output_text"],
            model=data["answer_model"],
            usage=Usage(
                input_tokens, cached_input_tokens, output_tokens, sum(reasoning)
            ),
            tool_calls=tuple(ToolCall(*call) for call in data.get("tool_calls", ())),
            finish_reason=None if finish is None else FinishReason(finish),
        ),
        created_at=data["created_at"],
        expires_at=data["expires_at"],
    )


class RedisExactStore:
    """An :class:`~services.cache.ports.ExactStore` in Redis.

    Args:
        client: a ``redis.asyncio`` client (bytes responses).
        prefix: prepended to every key this store writes.
    """

    backend = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str = "tollgate:cache:") -> None:
        self._client = client
        self._prefix = prefix
        self._put = client.register_script(_PUT)
        self._delete_set = client.register_script(_DELETE_SET)

    @classmethod
    def from_url(cls, url: str, prefix: str = "tollgate:cache:") -> RedisExactStore:
        """A store on a new connection pool to ``url``."""
        return cls(
            aioredis.Redis.from_url(
                url, socket_timeout=1.0, socket_connect_timeout=1.0
            ),
            prefix,
        )

    def _entry_key(self, key: str) -> str:
        return f"{self._prefix}e:{key}"

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except RedisError as error:
            raise BackendUnavailableError(
                f"redis failed: {type(error).__name__}",
                reason="EXACT_STORE_UNAVAILABLE",
            ) from error

    async def get(self, key: str) -> CacheEntry | None:
        """The entry with ``key``, or ``None`` (Redis has expired it)."""
        raw = await self._call(lambda: self._client.get(self._entry_key(key)))
        return None if raw is None else _decode(raw)

    async def put(self, entry: CacheEntry) -> PutResult:
        """Write ``entry`` to expire at its ``expires_at``; never evicts itself."""
        sets = {
            f"{self._prefix}t:{entry.tenant_id}",
            f"{self._prefix}m:{entry.request_model}",
            f"{self._prefix}m:{entry.answer.model}",
        }
        await self._call(
            lambda: self._put(
                keys=[self._entry_key(entry.key), *sorted(sets)],
                args=[entry.key, _encode(entry), int(entry.expires_at * 1000)],
            )
        )
        return PutResult(stored=True)

    async def delete(self, key: str) -> bool:
        """Remove the entry with ``key``."""
        removed = await self._call(lambda: self._client.delete(self._entry_key(key)))
        return bool(removed)

    async def _delete_members(self, set_key: str) -> int:
        removed = await self._call(
            lambda: self._delete_set(keys=[set_key], args=[f"{self._prefix}e:"])
        )
        return int(removed)

    async def delete_tenant(self, tenant_id: str) -> int:
        """Remove every entry of ``tenant_id``."""
        return await self._delete_members(f"{self._prefix}t:{tenant_id}")

    async def delete_model(self, model: str) -> int:
        """Remove every entry requested from or produced by ``model``."""
        return await self._delete_members(f"{self._prefix}m:{model}")

    async def delete_expired(self, now: float) -> int:
        """Nothing to do: Redis expires entries itself at their ``expires_at``."""
        return 0

    async def clear(self) -> int:
        """Remove every key under the prefix; returns the entries removed."""

        async def work() -> int:
            removed = 0
            batch: list[bytes] = []
            async for name in self._client.scan_iter(
                match=f"{self._prefix}*", count=1000
            ):
                batch.append(name)
                if len(batch) >= 500:
                    removed += await self._delete_batch(batch)
                    batch = []
            if batch:
                removed += await self._delete_batch(batch)
            return removed

        return await self._call(work)

    async def _delete_batch(self, names: list[bytes]) -> int:
        entry_prefix = f"{self._prefix}e:".encode()
        entries = [name for name in names if name.startswith(entry_prefix)]
        others = [name for name in names if not name.startswith(entry_prefix)]
        removed = int(await self._client.delete(*entries)) if entries else 0
        if others:
            await self._client.delete(*others)
        return removed

    async def usage(self) -> StoreUsage:
        """Entries under the prefix; the instance's memory, bound and evictions."""

        async def work() -> StoreUsage:
            entries = 0
            async for _ in self._client.scan_iter(
                match=f"{self._prefix}e:*", count=1000
            ):
                entries += 1
            memory = await self._client.info("memory")
            stats = await self._client.info("stats")
            try:
                config = await self._client.config_get("maxmemory")
                capacity = int(config.get("maxmemory") or 0)
            except ResponseError:  # managed Redis may refuse CONFIG
                capacity = 0
            return StoreUsage(
                entries=entries,
                bytes_used=int(memory.get("used_memory", 0)),
                capacity_bytes=capacity,
                backend_evictions=int(stats.get("evicted_keys", 0)),
            )

        return await self._call(work)

    async def ping(self) -> bool:
        """Whether Redis answers PING."""
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
