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
from services.ratelimit.app import build_app as build_ratelimit
from services.ratelimit.config import RateLimitSettings
from tests.conftest import ServeApp

# Packages a service must not import unless it uses them: the openai SDK (the
# gateway's), numpy and onnxruntime (the embedders'), the redis client (a backend
# chosen by settings), qdrant's clients.
_NEVER_EAGER = (
    "openai",
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
