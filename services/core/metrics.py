"""Prometheus metrics: one registry per process, the catalogue, the HTTP endpoint.

Every metric Tollgate exports is declared here, so names, labels and their meaning
live in one place (documented in docs/observability.md) and a dashboard can be
checked against them. Code records where the event happens: the RPC envelope
counts RPCs, the ratelimit servicer its decisions, the gateway its queue and upstream
calls. State that already lives in objects (breakers, queue depths) is read at scrape
time by callbacks registered with :func:`on_scrape`, so it is never counted twice.
Every process also exports prometheus_client's standard process (CPU, memory, file
descriptors), Python and garbage-collector series, and ``tollgate_build_info``.

Labels are bounded: methods, status codes, layers, tiers, priorities and models of
the configuration. Tenant, user, key or request ids are never labels.

The endpoint is an aiohttp server on the service's event loop, so scrape callbacks
run on the same thread as the code that mutates what they read.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REGISTRY = CollectorRegistry()
"""The process's one registry; nothing registers in prometheus_client's default."""

# The series prometheus_client's default registry would carry, which operators'
# dashboards and alerts expect of any Python process: process_cpu_seconds_total,
# process_resident_memory_bytes, process_open_fds... (Linux), python_info and
# python_gc_*. The collectors read /proc and the interpreter at scrape time only.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

# Latency buckets from 1 ms (in-process decisions) to a minute (long completions).
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# -- every service: what runs, and the shared RPC envelope

BUILD_INFO = Gauge(
    "tollgate_build_info",
    "Always 1, one series per process: the service it serves ('all' for tollgate "
    "serve all), Tollgate's version, the git commit it was built from ('unknown' "
    "when neither the image nor a checkout says) and the Python version it runs on.",
    ["service", "version", "git_sha", "python_version"],
    registry=REGISTRY,
)

RPC_REQUESTS = Counter(
    "tollgate_rpc_requests_total",
    "RPCs served, by service, full method and final gRPC status code.",
    ["service", "method", "code"],
    registry=REGISTRY,
)
RPC_DURATION = Histogram(
    "tollgate_rpc_duration_seconds",
    "Time from an RPC's arrival to its last message or error, in seconds.",
    ["service", "method", "code"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

# -- ratelimit

RATELIMIT_DECISIONS = Counter(
    "tollgate_ratelimit_decisions_total",
    "Limiter decisions: api is acquire or envoy; decision allow or deny; layer and "
    "metric name the bucket that denied ('none' when allowed).",
    ["api", "decision", "layer", "metric"],
    registry=REGISTRY,
)
RATELIMIT_DEGRADED = Gauge(
    "tollgate_ratelimit_degraded",
    "1 while the limiter decides locally because its shared store is down.",
    registry=REGISTRY,
)

# -- cache

CACHE_LOOKUPS = Counter(
    "tollgate_cache_lookups_total",
    "Cache lookups by tier (exact, semantic) and result: hit, miss, or rejected "
    "(a semantic candidate over the threshold that failed verification).",
    ["tier", "result"],
    registry=REGISTRY,
)
CACHE_SEMANTIC_HITS = Counter(
    "tollgate_cache_semantic_hits_total",
    "Verified semantic candidates by the check that accepted them (normalized, "
    "rephrased, inflection, spelling, typo, synonym, abbreviation, reorder, "
    "context) and mode: serve (served) or shadow (counted, not served).",
    ["check", "mode"],
    registry=REGISTRY,
)

CACHE_INDEX_REBUILDS = Counter(
    "tollgate_cache_index_rebuilds_total",
    "Rebuilds of the embedded semantic index (Qdrant Edge) by outcome: swapped (the "
    "rebuilt copy serves) or failed (it was abandoned; the live index serves on, "
    "unrebuilt, until the next).",
    ["outcome"],
    registry=REGISTRY,
)

# -- router

ROUTER_ROUTES = Counter(
    "tollgate_router_routes_total",
    "Routing decisions by model tier, prompt complexity (unspecified unless the "
    "caller asked for auto) and lane.",
    ["tier", "complexity", "lane"],
    registry=REGISTRY,
)
ROUTER_CLASSIFICATIONS = Counter(
    "tollgate_router_classifications_total",
    "Requests for model auto by the classifier that answered: the student alone "
    "(sure of itself, or the encoder could not run) or the complexity encoder.",
    ["classifier"],
    registry=REGISTRY,
)
ROUTER_DEGRADATION_LEVEL = Gauge(
    "tollgate_router_degradation_level",
    "Degradation level in force, 0 (full service) to 4 (maintenance).",
    registry=REGISTRY,
)

# -- costs

COSTS_SPEND = Counter(
    "tollgate_costs_spend_micros_total",
    "Spend booked in the ledger, in micro-dollars, by model.",
    ["model"],
    registry=REGISTRY,
)
COSTS_BUDGET_CHECKS = Counter(
    "tollgate_costs_budget_checks_total",
    "Budget checks, by how they were decided: `store` (a ledger transaction read "
    "the caller's budgets and reserved) or `no_budget` (no scope of the caller holds a "
    "budget, by the replica's set of budgeted scopes; nothing reserved).",
    ["decided_by"],
    registry=REGISTRY,
)
COSTS_BUDGETED_SCOPES = Gauge(
    "tollgate_costs_budgeted_scopes",
    "Scopes holding a budget, as this replica last read them from the ledger (plus "
    "those set through it); a budget set through another replica is enforced here "
    "once this count includes it.",
    registry=REGISTRY,
)
COSTS_SAVED = Counter(
    "tollgate_costs_saved_micros_total",
    "Savings the ledger booked (cache hits, routing to a cheaper model, the batch "
    "discount), in micro-dollars, by model.",
    ["model"],
    registry=REGISTRY,
)

# -- gateway

BREAKER_STATE = Gauge(
    "tollgate_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open. breaker is a downstream "
    "service (ratelimit, cache, router, costs) or upstream:<model>.",
    ["breaker"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "tollgate_queue_depth",
    "Requests waiting for an upstream slot, by priority.",
    ["priority"],
    registry=REGISTRY,
)
QUEUE_IN_FLIGHT = Gauge(
    "tollgate_queue_in_flight",
    "Upstream calls holding a slot, across models.",
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "tollgate_queue_wait_seconds",
    "Time an admitted request waited for an upstream slot, by priority.",
    ["priority"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
QUEUE_REFUSALS = Counter(
    "tollgate_queue_refusals_total",
    "Requests the queue did not send: reason full (refused at once) or expired "
    "(deadline passed before a slot), by priority.",
    ["priority", "reason"],
    registry=REGISTRY,
)
GATEWAY_ROUTES = Counter(
    "tollgate_gateway_routes_total",
    "Routing decisions the gateway used, by source: router (a Route call), lease "
    "(a decision the router leased for requests that route alike, reused without "
    "a call) or local (the router unreachable: the built-in table).",
    ["source"],
    registry=REGISTRY,
)
UPSTREAM_DURATION = Histogram(
    "tollgate_upstream_attempt_duration_seconds",
    "One upstream attempt (a stream: until it opens), by model and outcome: ok, "
    "throttled, rejected, error.",
    ["model", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_RETRIES = Counter(
    "tollgate_upstream_retries_total",
    "Upstream retries by model and reason: throttled (429) or transient "
    "(connection, timeout, 5xx).",
    ["model", "reason"],
    registry=REGISTRY,
)
UPSTREAM_TOKENS = Counter(
    "tollgate_upstream_tokens_total",
    "Tokens of complete upstream answers by model and kind: input, cached_input "
    "(part of input), output.",
    ["model", "kind"],
    registry=REGISTRY,
)

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
"""The value of :data:`BREAKER_STATE` per ``BreakerState.value``."""

ScrapeCallback = Callable[[], None]
_scrape_callbacks: list[ScrapeCallback] = []


def on_scrape(callback: ScrapeCallback) -> None:
    """Run ``callback`` before every scrape, to set gauges from live state."""
    _scrape_callbacks.append(callback)


def off_scrape(callback: ScrapeCallback) -> None:
    """Stop running ``callback`` (a service stopping); unknown callbacks are ignored."""
    with contextlib.suppress(ValueError):
        _scrape_callbacks.remove(callback)


@functools.cache
def tollgate_version() -> str:
    """The installed distribution's version ("unknown" outside an installation)."""
    try:
        return importlib.metadata.version("tollgate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


GIT_SHA_ENV = "TOLLGATE_GIT_SHA"
"""Set in the images from the ``TOLLGATE_GIT_SHA`` build argument."""

# Where this package sits in a checkout: services/core/metrics.py -> the repository.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def commit_of(root: Path) -> str:
    """The commit checked out at ``root`` (``git rev-parse HEAD``), else "unknown".

    Only a directory that is itself a checkout counts (an installed package inside
    some other repository's virtual environment is not), and only when git is
    installed; git gets 5 s.
    """
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(
            [git, "-C", str(root), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


@functools.cache
def git_sha() -> str:
    """The commit this process runs, found once per process (never per request).

    ``TOLLGATE_GIT_SHA`` when set and not empty (the images); else the commit of
    the checkout the code runs from; else "unknown".
    """
    given = os.environ.get(GIT_SHA_ENV, "").strip()
    return given or commit_of(_SOURCE_ROOT)


def set_build_info(service: str) -> None:
    """Say which service this process serves; the last call wins.

    One series per process, so that ``* on (job, instance) group_left (service)
    tollgate_build_info`` names the service of any process series.
    """
    BUILD_INFO.clear()
    BUILD_INFO.labels(
        service, tollgate_version(), git_sha(), platform.python_version()
    ).set(1)


def render() -> bytes:
    """The registry in Prometheus' text format, after the scrape callbacks ran."""
    for callback in list(_scrape_callbacks):
        callback()
    return generate_latest(REGISTRY)


def observe_rpc(
    service: str, method: str, code: grpc.StatusCode, seconds: float
) -> None:
    """Count one finished RPC and its duration."""
    requests, duration = _rpc_series(service, method, code)
    requests.inc()
    duration.observe(seconds)


@functools.cache
def _rpc_series(
    service: str, method: str, code: grpc.StatusCode
) -> tuple[Counter, Histogram]:
    """The labelled series of one (service, method, code), looked up once.

    The key space is bounded: services and methods are fixed, codes are 17.
    """
    return (
        RPC_REQUESTS.labels(service, method, code.name),
        RPC_DURATION.labels(service, method, code.name),
    )


@dataclass
class MetricsServer:
    """A running metrics endpoint (``GET /metrics``)."""

    port: int
    _runner: web.AppRunner

    async def stop(self) -> None:
        """Stop listening."""
        await self._runner.cleanup()


async def _metrics_handler(_: web.Request) -> web.Response:
    return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_metrics_server(host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (0 picks a free port).

    Raises:
        OSError: the port cannot be bound.
    """
    app = web.Application()
    app.router.add_get("/metrics", _metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
    return MetricsServer(port=bound, _runner=runner)
