"""The ``tollgate`` command: dev, serve, ask, simulate, certs."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services import cli_keys, cli_ops
from services.core.tls import ClientTls, TlsConfigError, sync_channel

if TYPE_CHECKING:
    from tollgate.common.v1 import common_pb2 as common_pb
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

# "all": the five services in one process (services/allinone.py).
SERVE_TARGETS = ("gateway", "ratelimit", "cache", "router", "costs", "all")
# What runs as N processes sharing its ports (services/core/workers.py).
WORKER_TARGETS = ("gateway", "all")
PRIORITIES = ("critical", "realtime", "standard", "batch", "low")


class CliSettings(BaseSettings):
    """Environment the CLI reads (prefix ``TOLLGATE_``, plus ``OPENAI_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="TOLLGATE_", frozen=True, extra="ignore"
    )

    dev_api_key: str | None = Field(
        default=None, description="The development key `tollgate dev` creates."
    )
    api_key: str | None = Field(
        default=None, description="The key `tollgate ask` sends."
    )
    gateway_address: str = Field(
        default="127.0.0.1:50051", description="Where `tollgate ask` finds the gateway."
    )
    state_dir: Path = Field(
        default=Path(".tollgate"),
        description="Where `tollgate dev` keeps databases, logs and the dev key.",
    )
    dev_ports: dict[str, int] = Field(
        default_factory=dict,
        description="Ports `tollgate dev` uses instead of its defaults, as JSON, "
        'for example {"gateway": 60051, "gateway_http": 9080}.',
    )


class OpenAISettings(BaseSettings):
    """The upstream account, when there is one (no prefix: OpenAI's own names)."""

    model_config = SettingsConfigDict(env_prefix="OPENAI_", frozen=True, extra="ignore")

    api_key: str | None = Field(default=None, description="OpenAI API key.")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL."
    )


def _dev(args: argparse.Namespace) -> int:
    from services.devsuite import (
        DEFAULT_PORTS,
        SCALE_PORTS,
        PortBusyError,
        ScaleBackendError,
        ScaleBackends,
        Supervisor,
        make_dev_key,
        start_suite,
    )

    settings = CliSettings()
    openai_settings = OpenAISettings()
    state_dir: Path = args.state_dir or settings.state_dir
    api_key = make_dev_key(settings.dev_api_key)
    unknown = sorted(set(settings.dev_ports) - {*DEFAULT_PORTS, *SCALE_PORTS})
    if unknown:
        known = ", ".join([*DEFAULT_PORTS, *SCALE_PORTS])
        print(
            f"tollgate dev: TOLLGATE_DEV_PORTS names {', '.join(unknown)}; "
            f"known: {known}",
            file=sys.stderr,
        )
        return 2
    scale = ScaleBackends(args.redis_url, args.postgres_dsn) if args.scale else None
    parts = (
        "simulator, two gateways, two ratelimit and two costs replicas, router, cache"
        if scale
        else "simulator and five services"
    )
    print(f"starting tollgate ({parts})...", flush=True)
    try:
        suite = start_suite(
            state_dir,
            api_key,
            ports=settings.dev_ports,
            openai_api_key=openai_settings.api_key,
            openai_base_url=openai_settings.base_url,
            tls=args.tls,
            scale=scale,
        )
    except PortBusyError as error:
        print(
            f"tollgate dev: {error}; stop what holds it, or move it with "
            f"""TOLLGATE_DEV_PORTS='{{"{error.name}": <port>}}'""",
            file=sys.stderr,
        )
        return 1
    except ModuleNotFoundError as error:
        print(
            f"tollgate dev: {error.name} is not installed; --scale needs redis and "
            "psycopg: pip install 'tollgate[ratelimit,costs]'",
            file=sys.stderr,
        )
        return 1
    except (ScaleBackendError, RuntimeError, TimeoutError) as error:
        print(f"tollgate dev: {error}", file=sys.stderr)
        return 1
    gateway = suite.gateway_address
    print("\ntollgate is running:")
    for name, child in suite.processes.items():
        print(
            f"  {name:<11} 127.0.0.1:{child.port:<6} pid {child.process.pid:<7} "
            f"log: {child.log_path}"
        )
    print(f"  upstream    {suite.upstream_base_url}")
    for name in suite.processes:
        if name.startswith("gateway"):
            print(
                f"  http door   {suite.http_url(name)}  ({name}; OpenAI SDKs: base_url)"
            )
    print("\nmetrics (Prometheus):")
    for name, port in suite.ports.items():
        service = name.removesuffix("_metrics")
        if name.endswith("_metrics") and service in suite.processes:
            print(f"  {service:<11} http://127.0.0.1:{port}/metrics")
    if suite.scale is not None:
        print(
            f"\nshared state of this run (dropped when it stops): Redis "
            f"{suite.scale.redis_url}, Postgres schema {suite.scale.postgres_schema}"
        )
        print(
            "gateways reach both replicas of ratelimit and costs (round robin, a "
            "replica that is down is skipped)"
        )
    print(f"\ndevelopment API key: {api_key}")
    tls = suite.client_tls
    if tls is not None:
        print(f"\nmutual TLS everywhere; CA and certificates in {tls.ca_file.parent}")
    if tls is None and scale is None:
        print(
            "\nratelimit, cache, router and costs are open to any caller on "
            "loopback: no service identity is checked (--tls admits only the "
            "gateway; docs/tls.md, 'Service identity')"
        )
    grpcurl_tls = (
        "-plaintext"
        if tls is None
        else f"-cacert {tls.ca_file} -cert {tls.cert_file} -key {tls.key_file}"
    )
    print("\ntry it:")
    print(
        f"  grpcurl {grpcurl_tls} -H 'authorization: Bearer {api_key}' "
        f"""-d '{{"input": "What is a token bucket?"}}' """
        f"{gateway} tollgate.gateway.v1.GatewayService/CreateResponse"
    )
    print('  tollgate ask "What is a token bucket?"')
    curl_tls = (
        ""
        if tls is None
        else f"--cacert {tls.ca_file} --cert {tls.cert_file} --key {tls.key_file} "
    )
    print(
        f"  curl {curl_tls}{suite.http_base_url}/chat/completions "
        "-H 'authorization: Bearer "
        f"""{api_key}' -H 'content-type: application/json' -d '{{"model": "auto", """
        """"messages": [{"role": "user", "content": "What is a token bucket?"}]}'"""
    )
    print(
        "\nsemantic cache: shadow mode (candidates are looked up and measured, never "
        "served) until its blind figures meet the goal of docs/cache.md; to serve "
        "them, start with TOLLGATE_CACHE_SEMANTIC_MODE=serve, or turn it on per "
        "tenant with the cache's SetSemanticPolicy admin RPC."
    )
    print(
        "\nA service that dies is restarted (after 1 s, doubling up to 30 s while it "
        "keeps dying). Ctrl-C stops everything.",
        flush=True,
    )

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    supervisor = Supervisor(
        suite, lambda line: print(line, file=sys.stderr, flush=True)
    )
    try:
        while not stop.wait(0.5):
            supervisor.tick()
    finally:
        print("stopping...", flush=True)
        suite.stop()
    return 0


def _serve(args: argparse.Namespace) -> int:
    module = importlib.import_module(
        "services.allinone"
        if args.service == "all"
        else f"services.{args.service}.__main__"
    )
    forwarded = []
    if args.port is not None:
        forwarded += ["--port", str(args.port)]
    if args.host is not None:
        forwarded += ["--host", args.host]
    if args.workers is not None:
        if args.service not in WORKER_TARGETS:
            print(
                f"tollgate serve {args.service}: --workers is for "
                f"{' and '.join(WORKER_TARGETS)}; scale {args.service} with replicas",
                file=sys.stderr,
            )
            return 2
        forwarded += ["--workers", str(args.workers)]
    return int(module.main(forwarded))


def _simulate(args: argparse.Namespace) -> int:
    from services.simulator.__main__ import main as simulator_main

    forwarded = [] if args.port is None else ["--port", str(args.port)]
    return simulator_main(forwarded)


def _ask_tls(args: argparse.Namespace, state_dir: Path) -> ClientTls | None:
    """TLS from --ca/--cert/--cert-key, else what `tollgate dev --tls` recorded."""
    from services.devsuite import load_client_tls

    if args.ca is None:
        return load_client_tls(state_dir)
    return ClientTls(args.ca, args.cert, args.cert_key, args.server_name)


def _certs(args: argparse.Namespace) -> int:
    from services.devcerts import SERVICE_NAMES, make_dev_certs

    out: Path = args.out or CliSettings().state_dir / "tls"
    certs = make_dev_certs(
        out, args.service or SERVICE_NAMES, extra_names=args.name or [], days=args.days
    )
    print(f"development CA and certificates written to {certs.directory}:")
    for path in sorted(certs.directory.glob("*.pem")):
        print(f"  {path.name}")
    print("for development only: the CA key (ca-key.pem) is beside them")
    return 0


class AskInputError(Exception):
    """A problem with the ``ask`` arguments, found before any call is made."""


def schema_name(path: Path) -> str:
    """The json_schema name of a schema file: its stem, as ``^[A-Za-z0-9_-]{1,64}$``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)[:64]
    # A stem of punctuation only ("..json") would name the schema "_".
    return name if re.search(r"[A-Za-z0-9]", name) else "schema"


def _load_json_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AskInputError(f"--json-schema: cannot read {path}: {error}") from error
    except ValueError as error:
        raise AskInputError(f"--json-schema: {path} is not JSON: {error}") from error
    if not isinstance(schema, dict):
        raise AskInputError(f"--json-schema: {path} must hold a JSON object schema")
    return schema


def _response_format(schema_file: Path | None) -> common_pb.ResponseFormat | None:
    from google.protobuf import struct_pb2
    from tollgate.common.v1 import common_pb2 as common_pb

    if schema_file is None:
        return None
    schema = struct_pb2.Struct()
    schema.update(_load_json_schema(schema_file))
    return common_pb.ResponseFormat(
        json_schema=common_pb.JsonSchemaFormat(
            name=schema_name(schema_file), schema=schema, strict=True
        )
    )


def build_ask_request(
    args: argparse.Namespace,
) -> gateway_pb.CreateResponseRequest | gateway_pb.StreamResponseRequest:
    """The request ``tollgate ask`` sends: a StreamResponseRequest with ``--stream``.

    Raises:
        AskInputError: ``--json-schema`` names no readable JSON object schema.
    """
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    kind = (
        gateway_pb.StreamResponseRequest
        if args.stream
        else gateway_pb.CreateResponseRequest
    )
    return kind(
        input=args.text,
        instructions=args.instructions or "",
        model=args.model or "",
        priority=f"PRIORITY_{args.priority.upper()}",
        user_id=args.user or "",
        response_format=_response_format(args.json_schema),
    )


def _summary(
    model: str,
    deployment: str,
    cache_status: int,
    usage: common_pb.Usage,
    cost_micros: int,
    request_id: str,
) -> str:
    from tollgate.common.v1 import common_pb2 as common_pb

    cache = common_pb.CacheStatus.Name(cache_status).removeprefix("CACHE_STATUS_")
    return (
        f"model={model} deployment={deployment} cache={cache.lower()} "
        f"tokens in={usage.input_tokens} out={usage.output_tokens} "
        f"cost=${cost_micros / 1_000_000:.6f} ({cost_micros} micros) "
        f"request_id={request_id}"
    )


def _tool_call_head(index: int, name: str, call_id: str) -> str:
    return f"[tool call {index}: {name} {call_id}] "


def _pretty_json(text: str) -> str | None:
    """``text`` pretty-printed when it is JSON, else None."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None


def print_reply(
    reply: gateway_pb.CreateResponseResponse, out: TextIO, *, json_answer: bool
) -> int:
    """Print a CreateResponse answer, its tool calls and the summary line.

    Returns:
        The exit status: 1 when a JSON answer was asked for and the text is not JSON.
    """
    status = 0
    text = reply.output_text
    if json_answer and text:
        pretty = _pretty_json(text)
        if pretty is None:
            print("error: the answer is not JSON", file=sys.stderr)
            status = 1
        else:
            text = pretty
    if text or not reply.tool_calls:
        print(text, file=out)
    for index, call in enumerate(reply.tool_calls):
        print(_tool_call_head(index, call.name, call.id) + call.arguments, file=out)
    print(
        "\n"
        + _summary(
            reply.model,
            reply.deployment,
            reply.cache_status,
            reply.usage,
            reply.cost_micros,
            reply.request_id,
        ),
        file=out,
    )
    return status


def print_stream(
    events: Iterable[gateway_pb.StreamResponseResponse],
    out: TextIO,
    *,
    json_answer: bool,
) -> int:
    """Print a stream as it arrives: text deltas, tool-call pieces, then the summary.

    A tool call starts on a line of its own (index, name, id) and its argument
    pieces are appended as they come.

    Returns:
        The exit status: 1 when the stream ended without a completion event, or a
        JSON answer was asked for and the text is not JSON.
    """
    started: gateway_pb.StreamStarted | None = None
    completed: gateway_pb.StreamCompleted | None = None
    text: list[str] = []
    at_line_start = True
    open_call: int | None = None

    def write(piece: str) -> None:
        nonlocal at_line_start
        if piece:
            out.write(piece)
            out.flush()
            at_line_start = piece.endswith("\n")

    for event in events:
        kind = event.WhichOneof("event")
        if kind == "started":
            started = event.started
        elif kind == "delta":
            if open_call is not None:
                write("\n")
                open_call = None
            text.append(event.delta.text)
            write(event.delta.text)
        elif kind == "tool_call_delta":
            piece = event.tool_call_delta
            if piece.index != open_call:
                if not at_line_start:
                    write("\n")
                write(_tool_call_head(piece.index, piece.name, piece.id))
                open_call = piece.index
            write(piece.arguments_delta)
        elif kind == "completed":
            completed = event.completed
    if not at_line_start:
        write("\n")
    if completed is None:
        print("error: the stream ended without a completion event", file=sys.stderr)
        return 1
    if started is None:
        from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

        started = gateway_pb.StreamStarted()
    print(
        "\n"
        + _summary(
            started.model,
            started.deployment,
            started.cache_status,
            completed.usage,
            completed.cost_micros,
            started.request_id,
        ),
        file=out,
    )
    answer = "".join(text)
    if json_answer and answer and _pretty_json(answer) is None:
        print("error: the answer is not JSON", file=sys.stderr)
        return 1
    return 0


def _ask(args: argparse.Namespace) -> int:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
    from tollgate.gateway.v1 import gateway_pb2_grpc

    settings = CliSettings()
    key = args.key or settings.api_key or settings.dev_api_key
    key_file = settings.state_dir / "dev-api-key"
    if not key and key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
    if not key:
        print(
            "no API key: pass --key, set TOLLGATE_API_KEY, or run `tollgate dev`",
            file=sys.stderr,
        )
        return 2
    try:
        request = build_ask_request(args)
    except AskInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    address = args.address or settings.gateway_address
    try:
        channel = sync_channel(address, _ask_tls(args, settings.state_dir))
    except TlsConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {key}"),)
    json_answer = args.json_schema is not None
    with channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            if isinstance(request, gateway_pb.StreamResponseRequest):
                events = stub.StreamResponse(request, metadata=metadata, timeout=60)
                status = print_stream(events, sys.stdout, json_answer=json_answer)
            else:
                reply = stub.CreateResponse(request, metadata=metadata, timeout=60)
                status = print_reply(reply, sys.stdout, json_answer=json_answer)
        except grpc.RpcError as error:
            sys.stdout.flush()
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tollgate``."""
    parser = argparse.ArgumentParser(
        prog="tollgate", description="A gRPC gateway in front of the OpenAI API."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run everything on embedded defaults")
    dev.add_argument("--state-dir", type=Path, help="databases, logs and the dev key")
    dev.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS between every service and for clients, with development "
        "certificates made in <state-dir>/tls",
    )
    dev.add_argument(
        "--scale",
        action="store_true",
        help="the scaled-out shape: two gateways (50051, 50151), two ratelimit "
        "(50052, 50152) and two costs replicas (50055, 50155), a router and a cache, "
        "mutual TLS, state in a fresh Redis database and Postgres schema",
    )
    dev.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379",
        help="with --scale: the Redis server; its highest-numbered empty database "
        "is used, and emptied on exit (default: %(default)s)",
    )
    dev.add_argument(
        "--postgres-dsn",
        default="",
        help="with --scale: the Postgres database (libpq string or URL); a fresh "
        "schema is made in it, and dropped on exit (default: libpq's defaults)",
    )
    dev.set_defaults(func=_dev)

    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVE_TARGETS)
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument(
        "--workers",
        type=int,
        help="gateway and all: processes sharing the gRPC and HTTP ports "
        "(SO_REUSEPORT). Default: TOLLGATE_WORKERS, else one per CPU the container "
        "may use (cgroup quota and affinity); for all, 1 unless its state is shared "
        "(docs/performance.md, 'Workers')",
    )
    serve.set_defaults(func=_serve)

    ask = commands.add_parser("ask", help="send one request to the gateway")
    ask.add_argument("text")
    ask.add_argument("--instructions", help="the system prompt, sent before the text")
    ask.add_argument(
        "--json-schema",
        type=Path,
        metavar="FILE",
        help="a JSON Schema file the answer must match (structured output, strict; "
        "the schema is named after the file); the JSON answer is pretty-printed",
    )
    ask.add_argument(
        "--stream",
        action="store_true",
        help="use StreamResponse: print the answer as it arrives",
    )
    ask.add_argument("--priority", choices=PRIORITIES, default="standard")
    ask.add_argument("--model", help="a model name, or auto (default)")
    ask.add_argument("--user", help="the end user id")
    ask.add_argument("--key", help="API key (default: TOLLGATE_API_KEY or the dev key)")
    ask.add_argument("--address", help="gateway host:port")
    ask.add_argument(
        "--ca",
        type=Path,
        help="CA file to verify the gateway with; turns TLS on (default: what "
        "`tollgate dev --tls` recorded, else plaintext)",
    )
    ask.add_argument("--cert", type=Path, help="client certificate for mutual TLS")
    ask.add_argument("--cert-key", type=Path, help="private key of --cert")
    ask.add_argument(
        "--server-name", help="name to expect in the gateway's certificate"
    )
    ask.set_defaults(func=_ask)

    simulate = commands.add_parser("simulate", help="run the OpenAI simulator")
    simulate.add_argument("--port", type=int)
    simulate.set_defaults(func=_simulate)

    certs = commands.add_parser(
        "certs", help="make a development CA and certificates for (mutual) TLS"
    )
    certs.add_argument(
        "--out", type=Path, help="directory for the files (default: <state-dir>/tls)"
    )
    certs.add_argument(
        "--service",
        action="append",
        help="a server certificate for this name (repeatable; default: the five "
        "services)",
    )
    certs.add_argument(
        "--name",
        action="append",
        help="an extra DNS name or IP address for every server certificate "
        "(repeatable)",
    )
    certs.add_argument("--days", type=int, default=365, help="validity in days")
    certs.set_defaults(func=_certs)
    cli_keys.register(commands)
    cli_ops.register(parser, commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tollgate`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
