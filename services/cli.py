"""The ``tollgate`` command: dev, serve, ask, simulate, certs."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from pathlib import Path

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.tls import ClientTls, TlsConfigError, sync_channel

# "all": the five services in one process (services/allinone.py).
SERVE_TARGETS = ("gateway", "ratelimit", "cache", "router", "costs", "all")
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


class OpenAISettings(BaseSettings):
    """The upstream account, when there is one (no prefix: OpenAI's own names)."""

    model_config = SettingsConfigDict(env_prefix="OPENAI_", frozen=True, extra="ignore")

    api_key: str | None = Field(default=None, description="OpenAI API key.")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL."
    )


def _dev(args: argparse.Namespace) -> int:
    from services.devsuite import make_dev_key, start_suite

    settings = CliSettings()
    openai_settings = OpenAISettings()
    state_dir: Path = args.state_dir or settings.state_dir
    api_key = make_dev_key(settings.dev_api_key)
    print("starting tollgate (simulator and five services)...", flush=True)
    suite = start_suite(
        state_dir,
        api_key,
        openai_api_key=openai_settings.api_key,
        openai_base_url=openai_settings.base_url,
        tls=args.tls,
    )
    gateway = suite.gateway_address
    print("\ntollgate is running:")
    for name, child in suite.processes.items():
        print(f"  {name:<10} 127.0.0.1:{child.port:<6} log: {child.log_path}")
    print(f"  upstream   {suite.upstream_base_url}")
    print("\nmetrics (Prometheus):")
    for name, port in suite.ports.items():
        if name.endswith("_metrics"):
            service = name.removesuffix("_metrics")
            print(f"  {service:<10} http://127.0.0.1:{port}/metrics")
    print(f"\ndevelopment API key: {api_key}")
    tls = suite.client_tls
    if tls is not None:
        print(f"\nmutual TLS everywhere; CA and certificates in {tls.ca_file.parent}")
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
    print("\nCtrl-C stops everything.", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            for name, child in suite.processes.items():
                if child.process.poll() is not None:
                    print(
                        f"{name} exited with {child.process.returncode}; "
                        f"see {child.log_path}",
                        file=sys.stderr,
                    )
                    stop.set()
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


def _ask(args: argparse.Namespace) -> int:
    from tollgate.common.v1 import common_pb2 as common_pb
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
    request = gateway_pb.CreateResponseRequest(
        input=args.text,
        model=args.model or "",
        priority=f"PRIORITY_{args.priority.upper()}",
        user_id=args.user or "",
    )
    address = args.address or settings.gateway_address
    try:
        channel = sync_channel(address, _ask_tls(args, settings.state_dir))
    except TlsConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            reply = stub.CreateResponse(
                request, metadata=(("authorization", f"Bearer {key}"),), timeout=60
            )
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    cache = common_pb.CacheStatus.Name(reply.cache_status).removeprefix("CACHE_STATUS_")
    print(reply.output_text)
    print(
        f"\nmodel={reply.model} deployment={reply.deployment} cache={cache.lower()} "
        f"tokens in={reply.usage.input_tokens} out={reply.usage.output_tokens} "
        f"cost=${reply.cost_micros / 1_000_000:.6f} ({reply.cost_micros} micros) "
        f"request_id={reply.request_id}"
    )
    return 0


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
    dev.set_defaults(func=_dev)

    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVE_TARGETS)
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.set_defaults(func=_serve)

    ask = commands.add_parser("ask", help="send one request to the gateway")
    ask.add_argument("text")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tollgate`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
