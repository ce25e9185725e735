"""``tollgate keys``: make, list, revoke and rotate the gateway's API keys.

Each subcommand calls one admin RPC of the gateway (CreateKey, ListKeys, RevokeKey,
RotateKey) with the admin key: ``--key``, else ``TOLLGATE_API_KEY``, else the
development key ``tollgate dev`` wrote in its state directory (which is the
gateway's admin key there). The gateway is found like ``tollgate ask`` finds it:
``--address``, else ``TOLLGATE_GATEWAY_ADDRESS``, else 127.0.0.1:50051, with the TLS
that ``tollgate dev --tls`` recorded unless ``--ca`` is given.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

MICROS_PER_USD = 1_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_DURATION = re.compile(r"(\d+)([smhdw])")


class KeysInputError(Exception):
    """A problem with the arguments, found before any call is made."""


def parse_duration(text: str) -> int:
    """Seconds of a duration such as ``30d``, ``12h``, ``1h30m`` or ``3600s``.

    Raises:
        KeysInputError: the text is not such a duration, or is zero.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise KeysInputError(
            f"{text!r} is not a duration: use a number and a unit (s, m, h, d, w), "
            "for example 30d, 12h or 1h30m"
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise KeysInputError(f"{text!r}: the duration must be positive")
    return seconds


def parse_budget_usd(text: str) -> int:
    """Micro-dollars of a dollar amount (``25``, ``12.50``), exactly.

    Raises:
        KeysInputError: not a positive amount of whole micro-dollars.
    """
    try:
        amount = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation as error:
        raise KeysInputError(f"--budget-usd: {text!r} is not an amount") from error
    micros = amount * MICROS_PER_USD
    if not amount.is_finite() or micros <= 0 or micros != micros.to_integral_value():
        raise KeysInputError(
            f"--budget-usd: {text!r} must be a positive amount of at most six decimals"
        )
    return int(micros)


def parse_models(text: str | None) -> list[str]:
    """The model names of ``--models a,b,c`` (blank names dropped)."""
    if not text:
        return []
    return [name.strip() for name in text.split(",") if name.strip()]


def build_create_request(args: argparse.Namespace) -> gateway_pb.CreateKeyRequest:
    """The CreateKeyRequest of ``tollgate keys create``.

    Raises:
        KeysInputError: a bad ``--expires`` or ``--budget-usd``.
    """
    from google.protobuf import duration_pb2
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    request = gateway_pb.CreateKeyRequest(
        tenant_id=args.tenant,
        service=args.service or "",
        user_id=args.user or "",
        user_tier=args.tier or "",
        models=parse_models(args.models),
    )
    if args.expires is not None:
        request.ttl.CopyFrom(
            duration_pb2.Duration(seconds=parse_duration(args.expires))
        )
    if args.budget_usd is not None:
        request.budget_limit_micros = parse_budget_usd(args.budget_usd)
    return request


def _when(message: Any, field: str) -> str:
    if not message.HasField(field):
        return ""
    at: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def key_status(key: gateway_pb.ApiKey, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if key.HasField("revoke_time"):
        return "revoked"
    if key.HasField("expire_time") and key.expire_time.ToDatetime(tzinfo=UTC) <= now:
        return "expired"
    return "active"


def _budget(key: gateway_pb.ApiKey) -> str:
    if not key.HasField("budget_limit_micros"):
        return "-"
    return f"${key.budget_limit_micros / MICROS_PER_USD:,.2f}/month"


def _source(key: gateway_pb.ApiKey) -> str:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    return gateway_pb.ApiKeySource.Name(key.source).removeprefix("API_KEY_SOURCE_")


def describe_key(key: gateway_pb.ApiKey) -> list[str]:
    """The lines that describe one key (never its secret)."""
    lines = [
        f"key_id:   {key.key_id}",
        f"tenant:   {key.tenant_id}",
        f"service:  {key.service}",
        f"user:     {key.user_id or '-'}",
        f"tier:     {key.user_tier}",
        f"models:   {', '.join(key.models) or 'any'}",
        f"expires:  {_when(key, 'expire_time') or 'never'}",
        f"budget:   {_budget(key)}",
    ]
    if key.HasField("revoke_time"):
        lines.append(f"revoked:  {_when(key, 'revoke_time')}")
    if key.HasField("previous_secret_expire_time"):
        lines.append(
            f"old secret works until {_when(key, 'previous_secret_expire_time')}"
        )
    return lines


def format_key_table(keys: list[gateway_pb.ApiKey], now: datetime) -> str:
    """The keys as an aligned table, one line each."""
    header = (
        "KEY_ID",
        "SOURCE",
        "STATUS",
        "TENANT",
        "SERVICE",
        "USER",
        "TIER",
        "MODELS",
        "EXPIRES",
        "BUDGET",
    )
    rows = [header]
    for key in keys:
        rows.append(
            (
                key.key_id,
                _source(key).lower(),
                key_status(key, now),
                key.tenant_id,
                key.service,
                key.user_id or "-",
                key.user_tier,
                ",".join(key.models) or "any",
                _when(key, "expire_time") or "never",
                _budget(key),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def _to_json(message: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    document: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True
    )
    return document


class _Gateway:
    """The admin key and a channel to the gateway, found as ``tollgate ask`` does."""

    def __init__(self, args: argparse.Namespace) -> None:
        from services.cli import CliSettings

        settings = CliSettings()
        key = args.key or settings.api_key or settings.dev_api_key
        key_file: Path = settings.state_dir / "dev-api-key"
        if not key and key_file.exists():
            key = key_file.read_text(encoding="utf-8").strip()
        if not key:
            raise KeysInputError(
                "no admin key: pass --key, set TOLLGATE_API_KEY, or run `tollgate dev`"
            )
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.address = args.address or settings.gateway_address
        self.state_dir = settings.state_dir

    def channel(self, args: argparse.Namespace) -> grpc.Channel:
        from services.core.tls import ClientTls, sync_channel
        from services.devsuite import load_client_tls

        tls = (
            load_client_tls(self.state_dir)
            if args.ca is None
            else ClientTls(args.ca, args.cert, args.cert_key, args.server_name)
        )
        return sync_channel(self.address, tls)


def _run(args: argparse.Namespace) -> int:
    from tollgate.gateway.v1 import gateway_pb2_grpc

    from services.core.tls import TlsConfigError

    try:
        gateway = _Gateway(args)
        request = args.build(args)
        channel = gateway.channel(args)
    except (KeysInputError, TlsConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            response = getattr(stub, args.rpc)(
                request, metadata=gateway.metadata, timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(_to_json(response), indent=2, ensure_ascii=False))
        return 0
    args.show(response)
    return 0


def _show_created(response: gateway_pb.CreateKeyResponse) -> None:
    print("\n".join(describe_key(response.key)))
    print(f"secret:   {response.secret}")
    print(
        "\nthe secret is shown once: store it now (the gateway keeps only its "
        "SHA-256 digest)",
        file=sys.stderr,
    )


def _show_list(response: gateway_pb.ListKeysResponse) -> None:
    if not response.keys:
        print("no keys")
        return
    print(format_key_table(list(response.keys), datetime.now(UTC)))


def _show_revoked(response: gateway_pb.RevokeKeyResponse) -> None:
    print(f"revoked {response.key.key_id} at {_when(response.key, 'revoke_time')}")


def _show_rotated(response: gateway_pb.RotateKeyResponse) -> None:
    print("\n".join(describe_key(response.key)))
    print(f"secret:   {response.secret}")
    print(
        "\nthe new secret is shown once: store it now"
        + (
            ""
            if response.key.HasField("previous_secret_expire_time")
            else "; the old one is refused from now on"
        ),
        file=sys.stderr,
    )


def _build_list(args: argparse.Namespace) -> gateway_pb.ListKeysRequest:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    return gateway_pb.ListKeysRequest(
        tenant_id=args.tenant or "", include_revoked=args.all
    )


def _build_revoke(args: argparse.Namespace) -> gateway_pb.RevokeKeyRequest:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    return gateway_pb.RevokeKeyRequest(key_id=args.key_id)


def _build_rotate(args: argparse.Namespace) -> gateway_pb.RotateKeyRequest:
    from google.protobuf import duration_pb2
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    request = gateway_pb.RotateKeyRequest(key_id=args.key_id)
    if args.grace is not None:
        request.grace_period.CopyFrom(
            duration_pb2.Duration(seconds=parse_duration(args.grace))
        )
    return request


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", help="admin key (default: TOLLGATE_API_KEY or the dev key)"
    )
    parser.add_argument("--address", help="gateway host:port")
    parser.add_argument(
        "--json", action="store_true", help="print the gateway's answer as JSON"
    )
    parser.add_argument(
        "--ca",
        type=Path,
        help="CA file to verify the gateway with; turns TLS on (default: what "
        "`tollgate dev --tls` recorded, else plaintext)",
    )
    parser.add_argument("--cert", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--cert-key", type=Path, help="private key of --cert")
    parser.add_argument(
        "--server-name", help="name to expect in the gateway's certificate"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the gateway"
    )


def register(commands: Any) -> None:
    """Add ``tollgate keys`` to the subcommands of ``tollgate``.

    Args:
        commands: what ``ArgumentParser.add_subparsers`` returned.
    """
    keys = commands.add_parser(
        "keys",
        help="make, list, revoke and rotate API keys (admin)",
        description="Manage the gateway's API keys with its admin key. A key's "
        "secret is shown once, when it is made or rotated.",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True)

    create = actions.add_parser("create", help="make an API key")
    create.add_argument("--tenant", required=True, help="the tenant it bills to")
    create.add_argument("--user", help="the key's own end user (default: none)")
    create.add_argument("--tier", help="the user's rate-limit tier (default: free)")
    create.add_argument("--service", help="the calling service (default: default)")
    create.add_argument(
        "--models",
        help="comma-separated models it may name, 'auto' for the router's choice "
        "(default: any)",
    )
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="how long it works, e.g. 30d, 12h, 1h30m (default: never expires)",
    )
    create.add_argument(
        "--budget-usd",
        metavar="N",
        help="its own hard budget per calendar month, in dollars (default: none)",
    )
    _connection_options(create)
    create.set_defaults(
        func=_run, rpc="CreateKey", build=build_create_request, show=_show_created
    )

    listing = actions.add_parser("list", help="list API keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    _connection_options(listing)
    listing.set_defaults(func=_run, rpc="ListKeys", build=_build_list, show=_show_list)

    revoke = actions.add_parser("revoke", help="revoke an API key for good")
    revoke.add_argument("key_id", help="the key's id (tk_...)")
    _connection_options(revoke)
    revoke.set_defaults(
        func=_run, rpc="RevokeKey", build=_build_revoke, show=_show_revoked
    )

    rotate = actions.add_parser(
        "rotate", help="give an API key a new secret (same id and attributes)"
    )
    rotate.add_argument("key_id", help="the key's id (tk_...)")
    rotate.add_argument(
        "--grace",
        metavar="DURATION",
        help="how long the old secret keeps working, e.g. 1h (default: refused at "
        "once)",
    )
    _connection_options(rotate)
    rotate.set_defaults(
        func=_run, rpc="RotateKey", build=_build_rotate, show=_show_rotated
    )
