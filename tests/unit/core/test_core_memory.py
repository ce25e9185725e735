"""What each service loads: small pods pay only for what a service uses.

The import checks run ``import services.<svc>.__main__`` in a fresh interpreter and
read its ``sys.modules``, so a test run that already imported everything cannot
hide an eager import. The tokenizer checks start real servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from unittest import mock

import grpc
import pytest

from services.core import server as core_server
from services.core.server import ServiceApp
from services.core.tokens import count_tokens
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from tests.conftest import ServeApp

# Packages a service must not import unless it uses them: the openai SDK (the
# gateway's), numpy and onnxruntime (the embedders'), the redis client (a backend
# chosen by settings), qdrant's clients, OpenTelemetry's SDK (tracing is off
# unless an OTLP endpoint is set).
_NEVER_EAGER = (
    "openai",
    "opentelemetry.sdk",
    "numpy",
    "onnxruntime",
    "tokenizers",
    "redis",
    "qdrant_client",
    "qdrant_edge",
    "psycopg",
)


def _imported(module: str) -> set[str]:
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("services.ratelimit.__main__", ()),
        ("services.costs.__main__", ()),
        # The cache imports its embedder and index only when it builds them.
        ("services.cache.__main__", ()),
        # The router's complexity model is numpy arithmetic.
        ("services.router.__main__", ("numpy",)),
        # The gateway calls the upstream with the openai SDK.
        ("services.gateway.app", ("openai",)),
    ],
)
def test_a_service_imports_no_package_it_does_not_use(
    module: str, allowed: tuple[str, ...]
) -> None:
    modules = _imported(module)
    eager = {name for name in _NEVER_EAGER if name not in allowed and (name in modules)}
    assert not eager, f"{module} imports {sorted(eager)}"


def _toy_app(counts_tokens: bool) -> ServiceApp:
    return ServiceApp(
        name="toy",
        service_names=["toy.v1.ToyService"],
        register=lambda server: None,
        counts_tokens=counts_tokens,
    )


async def test_a_service_that_never_counts_tokens_never_loads_the_tokenizer(
    serve_app: ServeApp,
) -> None:
    with mock.patch.object(core_server, "count_tokens") as count:
        await serve_app(_toy_app(counts_tokens=False))
        await serve_app(await build_ratelimit(RateLimitSettings(port=0)))
    count.assert_not_called()


async def test_a_service_that_counts_tokens_loads_the_tokenizer_at_start(
    serve_app: ServeApp,
) -> None:
    with mock.patch.object(core_server, "count_tokens") as count:
        running = await serve_app(_toy_app(counts_tokens=True))
    count.assert_called_once_with("")
    async with grpc.aio.insecure_channel(running.address) as channel:
        await channel.channel_ready()


# A real router in a fresh interpreter: one "auto" Route with the gateway's count,
# then one without (a direct gRPC caller's). Prints which encodings toktok holds
# after each.
_ROUTER_PROBE = """
import asyncio, json, sys
import toktok
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.router.v1 import router_pb2 as router_pb
from tollgate.router.v1 import router_pb2_grpc
from services.core.server import start_server
from services.router.app import build_app
from services.router.config import RouterSettings
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel

TEXT = "Prove that there are infinitely many primes."

async def main():
    settings = RouterSettings(
        host="127.0.0.1", port=0, complexity_encoder=False,
        admin_key_sha256s=ADMIN_KEY_SHA256S,
    )
    running = await start_server(await build_app(settings), settings)
    loaded = []
    async with admin_channel(running.address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        for counted in (int(sys.argv[1]), None):
            response = await stub.Route(router_pb.RouteRequest(
                caller=common_pb.Caller(tenant_id="acme"),
                requested_model="auto", input=TEXT, input_tokens=20,
                input_text_tokens=counted,
            ))
            loaded.append([sorted(k[0] for k in toktok._CACHE), response.complexity])
    await running.stop()
    print(json.dumps(loaded))

asyncio.run(main())
"""


def test_a_router_given_the_callers_token_count_never_loads_the_vocabulary() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _ROUTER_PROBE,
            str(count_tokens("Prove that there are infinitely many primes.")),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    (counted, uncounted) = json.loads(result.stdout.strip().splitlines()[-1])

    assert counted[0] == []
    # A caller that sends no count (grpcurl, another client) still gets the same
    # classification: the router counts, loading the vocabulary then.
    assert uncounted[0] == ["o200k_base"]
    assert counted[1] == uncounted[1] != 0


# A block freed after a larger one was mapped and unmapped: glibc's default keeps
# it in the heap (its mmap threshold rose to the larger block's size); with the
# threshold fixed, it is mapped on its own and leaves with its free.
_FREED_BLOCK_SCRIPT = """
import sys
from services.core.onnx_models import release_large_blocks
if sys.argv[1] == "fixed":
    assert release_large_blocks()
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
larger = b"x" * (8 << 20)
del larger
before = rss_mb()
block = b"x" * (6 << 20)
del block
print(rss_mb() - before)
"""


def _kept_after_free_mb(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _FREED_BLOCK_SCRIPT, mode],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_model_process_returns_a_large_freed_block_to_the_system() -> None:
    assert _kept_after_free_mb("default") >= 5  # the allocator's default keeps it
    assert _kept_after_free_mb("fixed") < 1
