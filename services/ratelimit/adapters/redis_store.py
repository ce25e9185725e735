"""The Redis counter store: limits shared exactly by every replica.

Each operation is one Lua script call (EVALSHA; redis-py's script object loads the
script again when the server answers NOSCRIPT, after a restart or SCRIPT FLUSH).
Scripts run atomically and read the time from Redis TIME, so replica clocks play no
part and N replicas decide exactly as one would.

Every key starts with one configured prefix that holds a Redis Cluster hash tag
(default ``{tollgate-rl}:``), so all limiter keys live in one hash slot. That is
what Redis Cluster needs: every key of one script call must be in the same slot,
and one request touches its user's buckets *and* the buckets of the model, which
all tenants share; tagging per tenant or per user would put those in different
slots (CROSSSLOT). The settle script reads the bucket keys recorded in the
reservation rather than from KEYS; they are in the reservation's slot by the same
construction.

Layout, under the prefix: ``b:<layer>:<metric>:<key>`` a bucket (hash: ``l`` level
in scaled units, ``t`` Redis time in ms), expiring once it has surely refilled;
``backoff`` one hash of model to ``factor:paused_until_ms``; ``rsv:<id>`` a
reservation (list: estimated tokens, then key, capacity, rate, backoff model of
each tokens bucket), expiring with the reservation TTL.

Acquire is idempotent by reservation id. The client retries a call once after a
connection error (a pooled socket may predate a Redis restart), and the lost reply
may belong to a script that ran: the replay finds the reservation the first run
recorded and returns its decision (admitted, with the levels as they now stand)
without debiting again. A first run that denied recorded nothing and debited
nothing, so its replay simply decides afresh; no reply of it was ever seen.
Acquires without a reservation (Envoy's descriptors) have no id to key on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis_asyncio
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.core.errors import BackendUnavailableError
from services.ratelimit.ports import (
    FACTOR_SCALE,
    MAX_FACTOR,
    SCALE,
    BackoffChange,
    BackoffState,
    BucketDebit,
    DebitOutcome,
    Metric,
    NewReservation,
    SettleOutcome,
)

# Helpers shared by every script. KEYS[1] is always the backoff hash.
_PRELUDE = f"""
local SCALE = {SCALE}
local FACTOR_SCALE = {FACTOR_SCALE}
local MAX_FACTOR = {MAX_FACTOR}
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function backoff(model)
  local value = redis.call('HGET', KEYS[1], model)
  if not value then return FACTOR_SCALE, 0 end
  local factor, paused_until = string.match(value, '^(%d+):(%d+)$')
  return tonumber(factor), tonumber(paused_until)
end

local function rate_of(base, model)
  if model == '' then return base end
  local factor = backoff(model)
  return math.max(1, math.floor(base * FACTOR_SCALE / factor))
end

local function level_of(key, capacity, rate)
  local state = redis.call('HMGET', key, 'l', 't')
  if not state[1] then return capacity end
  local elapsed = math.max(0, now - tonumber(state[2]))
  return math.min(capacity, tonumber(state[1]) + elapsed * rate)
end

local function store(key, capacity, base, model, level)
  local slowest = base
  if model ~= '' then
    slowest = math.max(1, math.floor(base * FACTOR_SCALE / MAX_FACTOR))
  end
  redis.call('HSET', key, 'l', level, 't', now)
  redis.call('PEXPIRE', key, math.max(1, math.ceil((capacity - level) / slowest)))
end
"""

# KEYS: backoff hash, n buckets, [reservation]. ARGV: n, m, m models, then per
# bucket capacity, rate, amount, backoff model, is-tokens; then [ttl_ms, estimate].
_ACQUIRE = (
    _PRELUDE
    + """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local base = 2 + m
-- A replay of an applied acquire (the client retried a call whose reply it lost)
-- finds its reservation and answers the same decision without debiting again.
if #KEYS == n + 2 and redis.call('EXISTS', KEYS[n + 2]) == 1 then
  local result = {1, 0}
  for i = 1, n do
    local a = base + (i - 1) * 5
    local rate = rate_of(tonumber(ARGV[a + 2]), ARGV[a + 4])
    result[#result + 1] = level_of(KEYS[1 + i], tonumber(ARGV[a + 1]), rate)
    result[#result + 1] = rate
  end
  return result
end
local paused = 0
for i = 1, m do
  local _, paused_until = backoff(ARGV[2 + i])
  paused = math.max(paused, paused_until - now)
end
local levels, rates = {}, {}
local applied = paused == 0
for i = 1, n do
  local a = base + (i - 1) * 5
  local capacity = tonumber(ARGV[a + 1])
  rates[i] = rate_of(tonumber(ARGV[a + 2]), ARGV[a + 4])
  levels[i] = level_of(KEYS[1 + i], capacity, rates[i])
  if levels[i] < tonumber(ARGV[a + 3]) then applied = false end
end
local result = {applied and 1 or 0, paused}
for i = 1, n do
  local a = base + (i - 1) * 5
  local capacity = tonumber(ARGV[a + 1])
  if applied then
    levels[i] = math.min(capacity, levels[i] - tonumber(ARGV[a + 3]))
  end
  store(KEYS[1 + i], capacity, tonumber(ARGV[a + 2]), ARGV[a + 4], levels[i])
  result[#result + 1] = levels[i]
  result[#result + 1] = rates[i]
end
if applied and #KEYS == n + 2 then
  local r = base + n * 5
  local reservation = {ARGV[r + 2]}
  for i = 1, n do
    local a = base + (i - 1) * 5
    if ARGV[a + 5] == '1' then
      reservation[#reservation + 1] = KEYS[1 + i]
      reservation[#reservation + 1] = ARGV[a + 1]
      reservation[#reservation + 1] = ARGV[a + 2]
      reservation[#reservation + 1] = ARGV[a + 4]
    end
  end
  redis.call('RPUSH', KEYS[n + 2], unpack(reservation))
  redis.call('PEXPIRE', KEYS[n + 2], ARGV[r + 1])
end
return result
"""
)

# KEYS: backoff hash, n buckets. ARGV: per bucket capacity, rate, backoff model.
_READ = (
    _PRELUDE
    + """
local result = {}
for i = 2, #KEYS do
  local a = (i - 2) * 3
  local rate = rate_of(tonumber(ARGV[a + 2]), ARGV[a + 3])
  result[#result + 1] = level_of(KEYS[i], tonumber(ARGV[a + 1]), rate)
  result[#result + 1] = rate
end
return result
"""
)

# KEYS: backoff hash, reservation. ARGV: actual tokens.
_SETTLE = (
    _PRELUDE
    + """
local reservation = redis.call('LRANGE', KEYS[2], 0, -1)
if #reservation == 0 then return {0, 0} end
redis.call('DEL', KEYS[2])
-- Without tokens buckets there is nothing to give back or charge.
local refund = 0
if #reservation > 1 then refund = tonumber(reservation[1]) - tonumber(ARGV[1]) end
for i = 2, #reservation, 4 do
  local key, capacity = reservation[i], tonumber(reservation[i + 1])
  local base, model = tonumber(reservation[i + 2]), reservation[i + 3]
  local level = level_of(key, capacity, rate_of(base, model))
  store(key, capacity, base, model, math.min(capacity, level + refund * SCALE))
end
return {1, refund}
"""
)

# KEYS: backoff hash. ARGV: model, numerator, denominator, pause_ms.
_REPORT = (
    _PRELUDE
    + """
local model = ARGV[1]
local factor, paused_until = backoff(model)
factor = math.floor(factor * tonumber(ARGV[2]) / tonumber(ARGV[3]))
factor = math.min(MAX_FACTOR, math.max(FACTOR_SCALE, factor))
local pause = tonumber(ARGV[4])
if pause > 0 then paused_until = math.max(paused_until, now + pause) end
if factor == FACTOR_SCALE and paused_until <= now then
  redis.call('HDEL', KEYS[1], model)
else
  redis.call('HSET', KEYS[1], model, string.format('%d:%d', factor, paused_until))
end
return {factor, math.max(0, paused_until - now)}
"""
)

# KEYS: backoff hash. Returns model, factor, paused_ms of every active backoff.
_BACKOFFS = (
    _PRELUDE
    + """
local result = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local factor, paused_until = backoff(all[i])
  if factor > FACTOR_SCALE or paused_until > now then
    result[#result + 1] = all[i]
    result[#result + 1] = factor
    result[#result + 1] = math.max(0, paused_until - now)
  end
end
return result
"""
)

# Errors that mean "Redis is not answering": unreachable, timed out, loading, or a
# replica promoted away under us. Script bugs (ResponseError) stay bugs.
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)


def connect(
    url: str, *, socket_timeout_ms: int, connect_timeout_ms: int
) -> redis_asyncio.Redis:
    """A Redis client with short timeouts and one immediate retry on a dead socket.

    Timeouts are tens of milliseconds: a decision that waits longer for Redis is
    better made by the fallback. Timeouts are not retried; a connection error is,
    once (a pooled socket may predate a Redis restart); the acquire script is
    idempotent by reservation id, so the retry of a call that did run is harmless.
    """
    client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout_ms / 1000,
        socket_connect_timeout=connect_timeout_ms / 1000,
        retry=Retry(NoBackoff(), 1),
        retry_on_timeout=False,
    )
    return client


class RedisCounterStore:
    """Token buckets, reservations and backoffs in Redis, one script per operation.

    Args:
        client: a connected client (see :func:`connect`).
        key_prefix: prefix of every key; must contain a ``{hash tag}``.
    """

    backend = "redis"

    def __init__(self, client: redis_asyncio.Redis, key_prefix: str) -> None:
        self._client = client
        self._prefix = key_prefix
        self._backoff_key = f"{key_prefix}backoff"
        self._acquire = client.register_script(_ACQUIRE)
        self._read = client.register_script(_READ)
        self._settle = client.register_script(_SETTLE)
        self._report = client.register_script(_REPORT)
        self._backoffs = client.register_script(_BACKOFFS)

    async def acquire(
        self,
        debits: Sequence[BucketDebit],
        *,
        models: Sequence[str],
        reservation: NewReservation | None,
    ) -> DebitOutcome:
        """Take every amount all-or-nothing (see ``CounterStore.acquire``)."""
        keys = [self._backoff_key, *(self._bucket_key(d) for d in debits)]
        args: list[str | int] = [len(debits), len(models), *models]
        for debit in debits:
            args += [
                debit.capacity,
                debit.rate_per_minute,
                debit.amount,
                debit.backoff_model,
                int(debit.bucket.metric is Metric.TOKENS),
            ]
        if reservation is not None:
            keys.append(f"{self._prefix}rsv:{reservation.reservation_id}")
            args += [reservation.ttl_ms, reservation.estimated_tokens]
        reply = await self._call(self._acquire, keys, args)
        return DebitOutcome(
            applied=reply[0] == 1,
            levels=tuple(int(v) for v in reply[2::2]),
            rates=tuple(int(v) for v in reply[3::2]),
            paused_ms=int(reply[1]),
        )

    async def read(self, debits: Sequence[BucketDebit]) -> DebitOutcome:
        """The refilled levels and rates in force (see ``CounterStore.read``)."""
        if not debits:
            return DebitOutcome(applied=False, levels=(), rates=())
        keys = [self._backoff_key, *(self._bucket_key(d) for d in debits)]
        args: list[str | int] = []
        for debit in debits:
            args += [debit.capacity, debit.rate_per_minute, debit.backoff_model]
        reply = await self._call(self._read, keys, args)
        return DebitOutcome(
            applied=False,
            levels=tuple(int(v) for v in reply[0::2]),
            rates=tuple(int(v) for v in reply[1::2]),
        )

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        """Settle a reservation (see ``CounterStore.settle``)."""
        keys = [self._backoff_key, f"{self._prefix}rsv:{reservation_id}"]
        found, refund = await self._call(self._settle, keys, [actual_tokens])
        return SettleOutcome(found=found == 1, refunded_tokens=int(refund))

    async def report_upstream(
        self, model: str, change: BackoffChange, pause_ms: int
    ) -> BackoffState:
        """Change a model's backoff (see ``CounterStore.report_upstream``)."""
        factor, paused_ms = await self._call(
            self._report,
            [self._backoff_key],
            [model, change.numerator, change.denominator, pause_ms],
        )
        return BackoffState(model=model, factor=int(factor), paused_ms=int(paused_ms))

    async def backoffs(self) -> list[BackoffState]:
        """Models with a factor above 1 or an active pause, sorted by model."""
        reply = await self._call(self._backoffs, [self._backoff_key], [])
        states = [
            BackoffState(
                model=bytes(reply[i]).decode(),
                factor=int(reply[i + 1]),
                paused_ms=int(reply[i + 2]),
            )
            for i in range(0, len(reply), 3)
        ]
        return sorted(states, key=lambda state: state.model)

    async def ping(self) -> bool:
        """Whether Redis answers PING within the socket timeout."""
        try:
            return bool(await self._client.ping())
        except (*_UNAVAILABLE, redis_errors.RedisError):
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _bucket_key(self, debit: BucketDebit) -> str:
        bucket = debit.bucket
        return (
            f"{self._prefix}b:{bucket.layer.value}:{bucket.metric.value}:{bucket.key}"
        )

    async def _call(
        self, script: Any, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        try:
            return await script(keys=keys, args=args)
        except _UNAVAILABLE as error:
            raise BackendUnavailableError(
                f"redis unavailable: {type(error).__name__}",
                retry_after=1.0,
                metadata={"backend": "redis"},
            ) from error
