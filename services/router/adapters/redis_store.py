"""Redis stores: the state every router replica shares.

Keys live under one prefix (``tollgate:router:`` by default):

| key | type | holds |
|---|---|---|
| ``level`` | string | the degradation level's number |
| ``timed_level`` | string | an operator's level for a while, as JSON (expires) |
| ``split`` | string | the traffic split as JSON |
| ``rollbacks`` | hash | canary name → rollback as JSON |
| ``outcomes:<deployment>`` | list | the latest outcomes, newest first, trimmed |
| ``totals:<deployment>`` | hash | ``requests`` and ``errors`` |
| ``routes:tier`` / ``routes:complexity`` | hash | decisions per label |
| ``routes:cost`` | hash | ``routed`` and ``premium`` micro-dollars |
| ``tenants`` | set | tenants with ``auto`` decisions |
| ``tenant:<tenant>`` | hash | counts (see below) |
| ``request:<id>`` | string | one ``auto`` decision as JSON, for 7 days |
| ``signal:<id>:<signal>`` | string | marks a signal counted, for 7 days |

A tenant's hash counts ``complexity:<level>``, ``downgraded``, ``signal:<signal>``,
``downgraded_signal:<signal>`` and ``shadow:<verdict>``.

Changes that read and write (a raise-only level, a rollback) are Lua scripts, so
two replicas cannot interleave them; reads of the control state are one pipeline.
Every Redis failure becomes :class:`BackendUnavailableError`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.core.errors import BackendUnavailableError
from services.router.adapters.memory import DEFAULT_OUTCOME_WINDOW
from services.router.enums import (
    Complexity,
    DegradationLevel,
    QualitySignal,
    ShadowVerdict,
)
from services.router.ports import (
    ControlState,
    DeploymentMetrics,
    LevelChange,
    Outcome,
    Rollback,
    RoutingCounts,
    TenantCounts,
    TenantRoute,
)

DEFAULT_PREFIX = "tollgate:router:"
ROUTE_MEMORY_SECONDS = 7 * 24 * 3600
"""How long an ``auto`` decision waits for its quality signals."""

_T = TypeVar("_T")

# KEYS[1] level, KEYS[2] timed level. ARGV[1] new level, ARGV[2] "1" for
# raise-only, ARGV[3] the full-service number (what an unset level means). A change
# that is not raise-only drops the timed level. Returns {previous or -1, applied}.
_CHANGE_LEVEL = """
local previous = redis.call('GET', KEYS[1])
local current = tonumber(previous or ARGV[3])
if ARGV[2] == '1' and tonumber(ARGV[1]) <= current then
  return {tonumber(previous or -1), 0}
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] ~= '1' then
  redis.call('DEL', KEYS[2])
end
return {tonumber(previous or -1), 1}
"""

# KEYS[1] split, KEYS[2] rollbacks. ARGV[1] canary, ARGV[2] baseline, ARGV[3] the
# rollback as JSON, ARGV[4] the split to start from when none is stored.
# A held level: kept when a higher one is still in force; the key also expires by
# itself. KEYS: held; ARGV: level, now, until (wall seconds), ttl_ms.
_HOLD_LEVEL = """
local current = redis.call('GET', KEYS[1])
if current then
  local held = cjson.decode(current)
  if tonumber(held.hold_until) > tonumber(ARGV[2])
      and tonumber(held.level) > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1],
  cjson.encode({level = tonumber(ARGV[1]), hold_until = tonumber(ARGV[3])}),
  'PX', ARGV[4])
return 1
"""

_ROLL_BACK = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
local split = cjson.decode(redis.call('GET', KEYS[1]) or ARGV[4])
local share = split[ARGV[1]] or 0
split[ARGV[1]] = 0
split[ARGV[2]] = (split[ARGV[2]] or 0) + share
redis.call('SET', KEYS[1], cjson.encode(split))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


async def _guarded(call: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return await call()
    except (RedisError, OSError) as error:
        raise BackendUnavailableError(
            f"redis unavailable: {type(error).__name__}", retry_after=1.0
        ) from error


def _rollback_to_json(rollback: Rollback) -> str:
    return json.dumps(
        {
            "deployment": rollback.deployment,
            "baseline": rollback.baseline,
            "reason": rollback.reason,
            "at": rollback.at,
        }
    )


def _rollback_from_json(text: str) -> Rollback:
    data = json.loads(text)
    return Rollback(
        deployment=str(data["deployment"]),
        baseline=str(data["baseline"]),
        reason=str(data["reason"]),
        at=float(data["at"]),
    )


def connect(url: str) -> aioredis.Redis:
    """A client for ``url`` that answers strings and gives up quickly."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    return client


class RedisControlStore:
    """Degradation level, traffic split and rollbacks shared through Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._level_key = f"{prefix}level"
        self._split_key = f"{prefix}split"
        self._rollbacks_key = f"{prefix}rollbacks"
        self._held_key = f"{prefix}held_level"
        self._timed_key = f"{prefix}timed_level"
        self._change_level = client.register_script(_CHANGE_LEVEL)
        self._hold_level = client.register_script(_HOLD_LEVEL)
        self._roll_back = client.register_script(_ROLL_BACK)

    async def state(self) -> ControlState:
        """Level, split and rollbacks in one round trip."""

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self._level_key)
                pipe.get(self._split_key)
                pipe.hgetall(self._rollbacks_key)
                pipe.get(self._held_key)
                pipe.get(self._timed_key)
                result: list[Any] = await pipe.execute()
                return result

        level, split, rollbacks, held, timed = await _guarded(read)
        held_fields = json.loads(held) if held is not None else None
        timed_fields = json.loads(timed) if timed is not None else None
        return ControlState(
            timed_level=None
            if timed_fields is None
            else DegradationLevel(int(timed_fields["level"])),
            timed_until=0.0 if timed_fields is None else float(timed_fields["until"]),
            held_level=None
            if held_fields is None
            else DegradationLevel(int(held_fields["level"])),
            held_until=0.0 if held_fields is None else float(held_fields["hold_until"]),
            level=None if level is None else DegradationLevel(int(level)),
            split=None
            if split is None
            else {str(k): int(v) for k, v in json.loads(split).items()},
            rollbacks={
                str(name): _rollback_from_json(text) for name, text in rollbacks.items()
            },
        )

    async def change_degradation_level(
        self, level: DegradationLevel, *, raise_only: bool
    ) -> LevelChange:
        """Set the level atomically; with ``raise_only``, only when it is higher."""
        previous, applied = await _guarded(
            lambda: self._change_level(
                keys=[self._level_key, self._timed_key],
                args=[
                    int(level),
                    "1" if raise_only else "0",
                    int(DegradationLevel.FULL_SERVICE),
                ],
            )
        )
        return LevelChange(
            previous=None if int(previous) < 0 else DegradationLevel(int(previous)),
            applied=bool(int(applied)),
        )

    async def hold_degradation_level(
        self, level: DegradationLevel, *, now: float, until: float
    ) -> None:
        """Hold ``level`` until ``until`` atomically; a higher hold in force stays."""
        ttl_ms = max(1, int((until - now) * 1000))
        await _guarded(
            lambda: self._hold_level(
                keys=[self._held_key], args=[int(level), now, until, ttl_ms]
            )
        )

    async def set_timed_degradation_level(
        self, level: DegradationLevel, *, now: float, until: float
    ) -> None:
        """Put ``level`` in force until ``until``; the key also expires by itself."""
        ttl_ms = max(1, int((until - now) * 1000))
        await _guarded(
            lambda: self._client.set(
                self._timed_key,
                json.dumps({"level": int(level), "until": until}),
                px=ttl_ms,
            )
        )

    async def set_traffic_split(
        self, split: Mapping[str, int], *, clear_rollbacks: frozenset[str]
    ) -> None:
        """Replace the split and forget the named rollbacks in one transaction."""

        async def write() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._split_key, json.dumps(dict(split)))
                if clear_rollbacks:
                    pipe.hdel(self._rollbacks_key, *sorted(clear_rollbacks))
                await pipe.execute()

        await _guarded(write)

    async def roll_back(
        self, rollback: Rollback, current_split: Mapping[str, int]
    ) -> bool:
        """Move the canary's share to its baseline unless already rolled back."""
        done = await _guarded(
            lambda: self._roll_back(
                keys=[self._split_key, self._rollbacks_key],
                args=[
                    rollback.deployment,
                    rollback.baseline,
                    _rollback_to_json(rollback),
                    json.dumps(dict(current_split)),
                ],
            )
        )
        return bool(int(done))

    async def ping(self) -> bool:
        """Whether Redis answers."""
        return bool(await _guarded(self._client.ping))


class RedisMetricsStore:
    """Outcomes and routing counts shared through Redis, in bounded memory."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = DEFAULT_PREFIX,
        outcome_window: int = DEFAULT_OUTCOME_WINDOW,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._outcome_window = outcome_window

    async def record_outcome(self, deployment: str, outcome: Outcome) -> None:
        """Count one upstream call; keep it in the trimmed window."""
        entry = f"{outcome.latency_ms!r}:{int(outcome.error)}"

        async def write() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lpush(self._outcomes_key(deployment), entry)
                pipe.ltrim(self._outcomes_key(deployment), 0, self._outcome_window - 1)
                pipe.hincrby(self._totals_key(deployment), "requests", 1)
                pipe.hincrby(self._totals_key(deployment), "errors", int(outcome.error))
                await pipe.execute()

        await _guarded(write)

    async def deployment_metrics(self, deployment: str) -> DeploymentMetrics:
        """The outcomes of ``deployment``, newest first."""

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._totals_key(deployment))
                pipe.lrange(self._outcomes_key(deployment), 0, -1)
                result: list[Any] = await pipe.execute()
                return result

        totals, entries = await _guarded(read)
        recent = []
        for entry in entries:
            latency, error = str(entry).rsplit(":", 1)
            recent.append(Outcome(latency_ms=float(latency), error=error == "1"))
        return DeploymentMetrics(
            requests=int(totals.get("requests", 0)),
            errors=int(totals.get("errors", 0)),
            recent=tuple(recent),
        )

    async def reset_deployment(self, deployment: str) -> None:
        """Forget the outcomes of ``deployment``."""
        await _guarded(
            lambda: self._client.delete(
                self._outcomes_key(deployment), self._totals_key(deployment)
            )
        )

    async def record_route(
        self,
        tier: str,
        complexity: Complexity,
        routed_cost_micros: int,
        premium_cost_micros: int,
        *,
        decisions: int = 1,
    ) -> None:
        """Count ``decisions`` routing decisions."""

        async def write() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hincrby(f"{self._prefix}routes:tier", tier, decisions)
                pipe.hincrby(
                    f"{self._prefix}routes:complexity", complexity.value, decisions
                )
                pipe.hincrby(f"{self._prefix}routes:cost", "routed", routed_cost_micros)
                pipe.hincrby(
                    f"{self._prefix}routes:cost", "premium", premium_cost_micros
                )
                await pipe.execute()

        await _guarded(write)

    async def routing_counts(self) -> RoutingCounts:
        """The decisions counted so far, by every replica."""

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(f"{self._prefix}routes:tier")
                pipe.hgetall(f"{self._prefix}routes:complexity")
                pipe.hgetall(f"{self._prefix}routes:cost")
                result: list[Any] = await pipe.execute()
                return result

        by_tier, by_complexity, cost = await _guarded(read)
        return RoutingCounts(
            by_tier={str(k): int(v) for k, v in by_tier.items()},
            by_complexity={Complexity(k): int(v) for k, v in by_complexity.items()},
            routed_cost_micros=int(cost.get("routed", 0)),
            premium_cost_micros=int(cost.get("premium", 0)),
        )

    async def record_tenant_route(self, route: TenantRoute) -> None:
        """Count one ``auto`` decision for its tenant; keep it for 7 days."""
        tenant_key = f"{self._prefix}tenant:{route.tenant_id}"
        entry = json.dumps(
            {
                "tenant_id": route.tenant_id,
                "complexity": route.complexity.value,
                "tier": route.tier,
                "downgraded": route.downgraded,
                "shadow": route.shadow.value if route.shadow else None,
            }
        )

        async def write() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.sadd(f"{self._prefix}tenants", route.tenant_id)
                pipe.hincrby(tenant_key, f"complexity:{route.complexity.value}", 1)
                pipe.hincrby(tenant_key, "downgraded", int(route.downgraded))
                if route.shadow is not None:
                    pipe.hincrby(tenant_key, f"shadow:{route.shadow.value}", 1)
                if route.request_id:
                    pipe.set(
                        f"{self._prefix}request:{route.request_id}",
                        entry,
                        ex=ROUTE_MEMORY_SECONDS,
                    )
                await pipe.execute()

        await _guarded(write)

    async def record_quality(
        self, request_id: str, signal: QualitySignal
    ) -> TenantRoute | None:
        """Count ``signal`` once (SET NX) against a remembered decision."""

        async def count() -> TenantRoute | None:
            raw = await self._client.get(f"{self._prefix}request:{request_id}")
            if raw is None:
                return None
            first = await self._client.set(
                f"{self._prefix}signal:{request_id}:{signal.value}",
                "1",
                nx=True,
                ex=ROUTE_MEMORY_SECONDS,
            )
            if not first:
                return None
            data = json.loads(raw)
            route = TenantRoute(
                request_id=request_id,
                tenant_id=str(data["tenant_id"]),
                complexity=Complexity(data["complexity"]),
                tier=str(data["tier"]),
                downgraded=bool(data["downgraded"]),
                shadow=ShadowVerdict(data["shadow"]) if data["shadow"] else None,
            )
            tenant_key = f"{self._prefix}tenant:{route.tenant_id}"
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hincrby(tenant_key, f"signal:{signal.value}", 1)
                if route.downgraded:
                    pipe.hincrby(tenant_key, f"downgraded_signal:{signal.value}", 1)
                await pipe.execute()
            return route

        return await _guarded(count)

    async def tenant_counts(self) -> Mapping[str, TenantCounts]:
        """Every tenant's counts, by every replica."""

        async def read() -> dict[str, dict[str, str]]:
            members = await self._client.smembers(f"{self._prefix}tenants")
            tenants = sorted(str(member) for member in members)
            async with self._client.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.hgetall(f"{self._prefix}tenant:{tenant}")
                rows: list[dict[str, str]] = await pipe.execute()
            return dict(zip(tenants, rows, strict=True))

        result: dict[str, TenantCounts] = {}
        for tenant, row in (await _guarded(read)).items():
            counts = {str(k): int(v) for k, v in row.items()}

            def prefixed(
                prefix: str, counts: dict[str, int] = counts
            ) -> dict[str, int]:
                return {
                    k.removeprefix(prefix): v
                    for k, v in counts.items()
                    if k.startswith(prefix)
                }

            result[str(tenant)] = TenantCounts(
                by_complexity={
                    Complexity(k): v for k, v in prefixed("complexity:").items()
                },
                downgraded=counts.get("downgraded", 0),
                signals={QualitySignal(k): v for k, v in prefixed("signal:").items()},
                downgraded_signals={
                    QualitySignal(k): v
                    for k, v in prefixed("downgraded_signal:").items()
                },
                shadow={ShadowVerdict(k): v for k, v in prefixed("shadow:").items()},
            )
        return result

    def _outcomes_key(self, deployment: str) -> str:
        return f"{self._prefix}outcomes:{deployment}"

    def _totals_key(self, deployment: str) -> str:
        return f"{self._prefix}totals:{deployment}"
