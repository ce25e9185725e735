"""Operator commands of ``tollgate``: report, usage, status, degrade and --version.

- ``tollgate report`` (admin key): the ledger by tenant, API key, user, service,
  model or day over a window, as a table or ``--csv``, from the gateway's
  GetUsageReport.
- ``tollgate usage``: the calling key's own usage, budgets and rate-limit headroom,
  from the gateway's GetUsage.
- ``tollgate status``: the gateway's breakers, degradation level, queues, in-flight
  requests and outbox, the router's level in force, and the grpc.health.v1 answer of
  every service.
- ``tollgate degrade LEVEL [--for DURATION]`` (admin key): the router's
  SetDegradationLevel; with ``--for`` the level reverts by itself.
- ``tollgate --version``: the installed package's version.

Keys and addresses are found as ``tollgate ask`` finds them: ``--key``, else
``TOLLGATE_API_KEY``, else the development key ``tollgate dev`` wrote in its state
directory (which is every service's admin key there); ``--address``, else
``TOLLGATE_GATEWAY_ADDRESS``, else the gateway's development port. The other
services default to their development ports (``TOLLGATE_DEV_PORTS`` included), each
overridable with a flag. TLS is what ``tollgate dev --tls`` recorded unless ``--ca``
is given.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import grpc

if TYPE_CHECKING:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    from services.core.tls import ClientTls

MICROS_PER_USD = 1_000_000
DISTRIBUTION = "tollgate"
# What `tollgate report --by` accepts, and the response grouping and column each is.
GROUPINGS = {
    "tenant": ("USAGE_REPORT_GROUPING_TENANT", "tenant_id"),
    "key": ("USAGE_REPORT_GROUPING_API_KEY", "api_key_id"),
    "user": ("USAGE_REPORT_GROUPING_USER", "user_id"),
    "service": ("USAGE_REPORT_GROUPING_SERVICE", "service"),
    "model": ("USAGE_REPORT_GROUPING_MODEL", "model"),
    "day": ("USAGE_REPORT_GROUPING_DAY", "day"),
}
# The degradation ladder (seed section 6): what `tollgate degrade` accepts.
LEVELS = (
    "full_service",
    "reduced_quality",
    "cached_only",
    "static_fallback",
    "maintenance",
)
HEALTH_SERVICES = ("gateway", "ratelimit", "cache", "router", "costs")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LINE_COLUMNS = (
    "requests",
    "cost_micros",
    "saved_micros",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
)


class OpsInputError(Exception):
    """A problem with the arguments, found before any call is made."""


def package_version() -> str:
    """The installed ``tollgate`` distribution's version (``unknown`` if none)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``30m``, ``2h``, ``1h30m``, ``90s`` or ``7d``.

    Raises:
        OpsInputError: the text is not such a duration, or is zero.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise OpsInputError(
            f"{text!r} is not a duration: use numbers with units (ms, s, m, h, d, "
            "w), for example 30m, 2h or 1h30m"
        )
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise OpsInputError(f"{text!r}: the duration must be positive")
    return seconds


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time: RFC 3339, a date (midnight UTC), or a duration ago (``7d``).

    A time without a zone offset is UTC.

    Raises:
        OpsInputError: none of those.
    """
    value = text.strip()
    try:
        return now - timedelta(seconds=parse_duration(value))
    except OpsInputError:
        pass
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        at = datetime.fromisoformat(value)
    except ValueError as error:
        raise OpsInputError(
            f"{text!r} is not a time: use RFC 3339 (2026-01-05T09:00:00Z), a date "
            "(2026-01-05, midnight UTC) or a duration ago (7d, 12h)"
        ) from error
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_level(text: str) -> str:
    """The DegradationLevel value name of ``0``..``4`` or a level's name.

    Raises:
        OpsInputError: neither.
    """
    value = text.strip().lower().replace("-", "_")
    if value.isdigit() and int(value) < len(LEVELS):
        value = LEVELS[int(value)]
    if value not in LEVELS:
        raise OpsInputError(
            f"{text!r} is not a degradation level: use 0-4 or one of "
            + ", ".join(LEVELS)
        )
    return f"DEGRADATION_LEVEL_{value.upper()}"


def level_name(value: int) -> str:
    """``cached_only (2)`` for a DegradationLevel value."""
    from tollgate.common.v1 import common_pb2 as common_pb

    name = common_pb.DegradationLevel.Name(value).removeprefix("DEGRADATION_LEVEL_")
    if name == "UNSPECIFIED":
        name = "FULL_SERVICE"
    return f"{name.lower()} ({LEVELS.index(name.lower())})"


def _rfc3339(message: Any, field: str) -> str:
    # Any: any message with a Timestamp field.
    if not message.HasField(field):
        return "-"
    at: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _usd(micros: int) -> str:
    return f"{micros / MICROS_PER_USD:.6f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: numbers to the right, everything else to the left."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = [
        bool(rows) and all(_NUMBER.fullmatch(row[i]) for row in rows)
        for i in range(len(header))
    ]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in table
    )


def _line_cells(line: gateway_pb.UsageLine, label: str) -> list[str]:
    return [
        label,
        str(line.requests),
        _usd(line.cost_micros),
        _usd(line.saved_micros),
        str(line.input_tokens),
        str(line.cached_input_tokens),
        str(line.output_tokens),
    ]


_TABLE_HEADER = ("REQUESTS", "COST $", "SAVED $", "INPUT", "CACHED", "OUTPUT")


def print_report(
    report: gateway_pb.GetUsageReportResponse, by: str, out: TextIO, *, as_csv: bool
) -> None:
    """A usage report as a table (with a total line) or as CSV (lines only)."""
    column = GROUPINGS[by][1]
    if as_csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([column, *_LINE_COLUMNS])
        for line in report.lines:
            writer.writerow([line.key, *(getattr(line, c) for c in _LINE_COLUMNS)])
        return
    window = f"{_rfc3339(report, 'start_time')} .. {_rfc3339(report, 'end_time')}"
    print(f"usage by {by}, {window} ({report.currency_code})", file=out)
    rows = [_line_cells(line, line.key or "(none)") for line in report.lines]
    rows.append(_line_cells(report.total, "total"))
    print(format_table([column.upper(), *_TABLE_HEADER], rows), file=out)
    print(
        f"savings: cache ${_usd(report.cache_saved_micros)}, routing "
        f"${_usd(report.routing_saved_micros)}, batch "
        f"${_usd(report.batch_saved_micros)}",
        file=out,
    )


def print_usage(usage: gateway_pb.GetUsageResponse, out: TextIO) -> None:
    """A key's own usage: totals, by model, by day, budgets and headroom."""
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

    window = f"{_rfc3339(usage, 'start_time')} .. {_rfc3339(usage, 'end_time')}"
    print(f"key {usage.api_key_id} (tenant {usage.tenant_id}), {window}", file=out)
    print(
        f"{usage.requests} requests, ${_usd(usage.cost_micros)} spent, "
        f"${_usd(usage.saved_micros)} saved ({usage.currency_code})",
        file=out,
    )
    for title, lines in (("model", usage.by_model), ("day", usage.by_day)):
        if lines:
            print(file=out)
            rows = [_line_cells(line, line.key) for line in lines]
            print(format_table([title.upper(), *_TABLE_HEADER], rows), file=out)
    print("\nbudgets", file=out)
    if not usage.budgets:
        print("  none", file=out)
    for budget in usage.budgets:
        scope = gateway_pb.UsageBudgetScope.Name(budget.scope)
        period = gateway_pb.UsageBudgetPeriod.Name(budget.period)
        kind = scope.removeprefix("USAGE_BUDGET_SCOPE_").lower()
        per = period.removeprefix("USAGE_BUDGET_PERIOD_").lower()
        print(
            f"  {kind} {budget.subject} per {per}{' (hard)' if budget.hard else ''}: "
            f"${_usd(budget.remaining_micros)} left of ${_usd(budget.limit_micros)} "
            f"(spent ${_usd(budget.spent_micros)}, reserved "
            f"${_usd(budget.reserved_micros)}), resets {_rfc3339(budget, 'resets_at')}",
            file=out,
        )
    if usage.HasField("budget_remaining_micros"):
        print(f"  may still spend: ${_usd(usage.budget_remaining_micros)}", file=out)
    print("\nrate limits", file=out)
    if usage.rate_headroom_unknown:
        print("  unknown (the rate limiter did not answer)", file=out)
    for item in usage.rate_headroom:
        reset = item.reset.ToNanoseconds() / 1e9
        print(
            f"  {item.metric}: {item.remaining} of {item.limit_per_minute} per "
            f"minute left, full again in {reset:.1f}s",
            file=out,
        )


@dataclass
class _Connection:
    """A key (when one is found), the TLS and the addresses of the services."""

    key: str | None
    tls: ClientTls | None
    addresses: dict[str, str]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),) if self.key else ()

    def channel(self, service: str) -> grpc.Channel:
        from services.core.tls import sync_channel

        return sync_channel(self.addresses[service], self.tls)


def _connect(args: argparse.Namespace, *, key_required: bool) -> _Connection:
    from services.cli import CliSettings
    from services.core.tls import ClientTls
    from services.devsuite import DEFAULT_PORTS, load_client_tls

    settings = CliSettings()
    key = args.key or settings.api_key or settings.dev_api_key
    key_file: Path = settings.state_dir / "dev-api-key"
    if not key and key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
    if not key and key_required:
        raise OpsInputError(
            "no API key: pass --key, set TOLLGATE_API_KEY, or run `tollgate dev`"
        )
    ports = {**DEFAULT_PORTS, **settings.dev_ports}
    addresses = {name: f"127.0.0.1:{ports[name]}" for name in HEALTH_SERVICES}
    if "gateway_address" in settings.model_fields_set:
        addresses["gateway"] = settings.gateway_address
    for name in HEALTH_SERVICES:
        flag = "address" if name == "gateway" else f"{name}_address"
        given = getattr(args, flag, None)
        if given:
            addresses[name] = given
    tls = (
        load_client_tls(settings.state_dir)
        if args.ca is None
        else ClientTls(args.ca, args.cert, args.cert_key, args.server_name)
    )
    return _Connection(key, tls, addresses)


def _window(args: argparse.Namespace, request: Any) -> None:
    # Any: GetUsageRequest or GetUsageReportRequest.
    now = datetime.now(UTC)
    since = parse_when(args.since, now) if args.since else None
    until = parse_when(args.until, now) if args.until else None
    if since is not None and until is not None and until <= since:
        raise OpsInputError("--until must be after --since")
    if since is not None:
        request.start_time.FromDatetime(since)
    if until is not None:
        request.end_time.FromDatetime(until)


def _rpc_error(error: grpc.RpcError) -> int:
    print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
    return 1


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """``command`` with bad input reported as exit status 2, RPC errors as 1."""
    from services.core.tls import TlsConfigError

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (OpsInputError, TlsConfigError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except grpc.RpcError as error:
            return _rpc_error(error)

    return run


def _report(args: argparse.Namespace) -> int:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
    from tollgate.gateway.v1 import gateway_pb2_grpc

    request = gateway_pb.GetUsageReportRequest(
        tenant_id=args.tenant or "",
        group_by=GROUPINGS[args.by][0],
    )
    _window(args, request)
    connection = _connect(args, key_required=True)
    with connection.channel("gateway") as channel:
        report = gateway_pb2_grpc.GatewayServiceStub(channel).GetUsageReport(
            request, metadata=connection.metadata, timeout=args.timeout
        )
    print_report(report, args.by, sys.stdout, as_csv=args.csv)
    return 0


def _usage(args: argparse.Namespace) -> int:
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
    from tollgate.gateway.v1 import gateway_pb2_grpc

    request = gateway_pb.GetUsageRequest(model=args.model or "")
    _window(args, request)
    connection = _connect(args, key_required=True)
    with connection.channel("gateway") as channel:
        usage = gateway_pb2_grpc.GatewayServiceStub(channel).GetUsage(
            request, metadata=connection.metadata, timeout=args.timeout
        )
    print_usage(usage, sys.stdout)
    return 0


def _degrade(args: argparse.Namespace) -> int:
    from tollgate.router.v1 import router_pb2 as router_pb
    from tollgate.router.v1 import router_pb2_grpc

    request = router_pb.SetDegradationLevelRequest(
        level=parse_level(args.level),
        reason=args.reason or "tollgate degrade",
    )
    if args.duration is not None:
        request.duration.FromNanoseconds(round(parse_duration(args.duration) * 1e9))
    connection = _connect(args, key_required=True)
    with connection.channel("router") as channel:
        change = router_pb2_grpc.RouterServiceStub(channel).SetDegradationLevel(
            request, metadata=connection.metadata, timeout=args.timeout
        )
    until = (
        f"until {_rfc3339(change, 'expires_at')}, then the standing level again"
        if change.HasField("expires_at")
        else "until changed"
    )
    print(
        f"degradation level {level_name(change.level)} {until} "
        f"(was {level_name(change.previous_level)})"
    )
    return 0


def _health(connection: _Connection, service: str, timeout: float) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with connection.channel(service) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as error:
        return f"unreachable ({error.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def _status(args: argparse.Namespace) -> int:
    from tollgate.common.v1 import common_pb2 as common_pb
    from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
    from tollgate.gateway.v1 import gateway_pb2_grpc
    from tollgate.router.v1 import router_pb2 as router_pb
    from tollgate.router.v1 import router_pb2_grpc

    connection = _connect(args, key_required=True)
    healthy = True
    print("health")
    rows = []
    for service in HEALTH_SERVICES:
        state = _health(connection, service, args.timeout)
        healthy = healthy and state == "SERVING"
        rows.append([service, connection.addresses[service], state])
    print(_indent(format_table(["SERVICE", "ADDRESS", "STATUS"], rows)))

    print("\ndegradation")
    try:
        with connection.channel("router") as channel:
            # A tenant id no tenant has: the level is wanted, not each tenant's mix.
            stats = router_pb2_grpc.RouterServiceStub(channel).GetRoutingStats(
                router_pb.GetRoutingStatsRequest(tenant_id="-"), timeout=args.timeout
            )
        until = (
            f" until {_rfc3339(stats, 'degradation_level_until')}"
            if stats.HasField("degradation_level_until")
            else ""
        )
        print(f"  router level in force: {level_name(stats.degradation_level)}{until}")
    except grpc.RpcError as error:
        print(f"  router level in force: unknown ({error.code().name})")

    try:
        with connection.channel("gateway") as channel:
            status = gateway_pb2_grpc.GatewayServiceStub(channel).GetStatus(
                gateway_pb.GetStatusRequest(),
                metadata=connection.metadata,
                timeout=args.timeout,
            )
    except grpc.RpcError as error:
        print(f"  gateway: no status ({error.code().name}: {error.details()})")
        return 1
    print(f"  gateway last saw: {level_name(status.degradation_level)}")

    print("\nbreakers")
    breaker_rows = [
        [
            breaker.name,
            gateway_pb.BreakerState.Name(breaker.state)
            .removeprefix("BREAKER_STATE_")
            .lower(),
            str(breaker.failure_count),
            _rfc3339(breaker, "opened_at"),
        ]
        for breaker in status.breakers
    ]
    print(_indent(format_table(["NAME", "STATE", "FAILURES", "OPENED"], breaker_rows)))
    healthy = healthy and all(
        breaker.state == gateway_pb.BREAKER_STATE_CLOSED for breaker in status.breakers
    )

    print("\nqueues")
    queue_rows = [
        [
            common_pb.Priority.Name(queue.priority).removeprefix("PRIORITY_").lower(),
            str(queue.depth),
            str(queue.admitted),
            str(queue.rejected),
            f"{queue.p50_wait_ms:.1f}",
        ]
        for queue in status.queues
    ]
    print(
        _indent(
            format_table(
                ["PRIORITY", "DEPTH", "ADMITTED", "REJECTED", "P50 WAIT MS"],
                queue_rows,
            )
        )
    )
    print(f"  in flight to the upstream: {status.in_flight}")

    print("\noutbox")
    print(f"  usage records waiting for the ledger: {status.outbox_depth}")
    print(f"\ngateway version {status.version}")
    return 0 if healthy else 1


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca",
        type=Path,
        help="CA file to verify the services with; turns TLS on (default: what "
        "`tollgate dev --tls` recorded, else plaintext)",
    )
    parser.add_argument("--cert", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--cert-key", type=Path, help="private key of --cert")
    parser.add_argument(
        "--server-name", help="name to expect in the services' certificates"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each answer"
    )


def _key_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--key", help=f"{what} (default: TOLLGATE_API_KEY or the dev key)"
    )


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="start: RFC 3339, a date (midnight UTC) or a duration ago (7d); with "
        "neither --since nor --until, the current month of the ledger",
    )
    parser.add_argument("--until", metavar="WHEN", help="end, exclusive (default: now)")


def register(parser: argparse.ArgumentParser, commands: Any) -> None:
    """Add ``--version``, ``report``, ``usage``, ``status`` and ``degrade``.

    Args:
        parser: the ``tollgate`` parser (for ``--version``).
        commands: what its ``add_subparsers`` returned.
    """
    parser.add_argument(
        "--version",
        action="version",
        version=f"tollgate {package_version()}",
        help="print the installed version and exit",
    )

    report = commands.add_parser(
        "report",
        help="spend and tokens by tenant, key, user, service, model or day (admin)",
        description="The ledger over a window, grouped one way, from the gateway's "
        "GetUsageReport (admin key).",
    )
    report.add_argument(
        "--by", choices=sorted(GROUPINGS), default="model", help="the grouping"
    )
    report.add_argument("--tenant", help="only this tenant (default: every tenant)")
    _window_options(report)
    report.add_argument(
        "--csv",
        action="store_true",
        help="CSV (integers: micro-dollars and tokens) instead of a table",
    )
    _key_option(report, "admin key")
    report.add_argument("--address", help="gateway host:port")
    _tls_options(report)
    report.set_defaults(func=_guarded(_report))

    usage = commands.add_parser(
        "usage",
        help="your key's own spend, budgets left and rate-limit headroom",
        description="The calling key's usage, from the gateway's GetUsage.",
    )
    _window_options(usage)
    usage.add_argument(
        "--model", help="also count this model's global rate limits in the headroom"
    )
    _key_option(usage, "API key")
    usage.add_argument("--address", help="gateway host:port")
    _tls_options(usage)
    usage.set_defaults(func=_guarded(_usage))

    status = commands.add_parser(
        "status",
        help="health of every service, breakers, degradation, queues, outbox",
        description="Exit status 0 when every service is SERVING and every "
        "breaker closed, else 1.",
    )
    _key_option(status, "API key")
    status.add_argument("--address", help="gateway host:port")
    for service in HEALTH_SERVICES[1:]:
        status.add_argument(
            f"--{service}-address",
            help=f"{service} host:port (default: its `tollgate dev` port)",
        )
    _tls_options(status)
    status.set_defaults(func=_guarded(_status))

    degrade = commands.add_parser(
        "degrade",
        help="set the degradation level, for a while or until changed (admin)",
        description="Set the router's degradation level for every router replica: "
        "0 full_service, 1 reduced_quality, 2 cached_only, 3 static_fallback, "
        "4 maintenance. With --for it reverts by itself to the standing level.",
    )
    degrade.add_argument("level", help="0-4 or a level's name")
    degrade.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="how long, e.g. 30m, 2h, 1h30m (at most 7d; default: until changed)",
    )
    degrade.add_argument("--reason", help="why, for the logs")
    _key_option(degrade, "admin key")
    degrade.add_argument(
        "--router-address", help="router host:port (default: its `tollgate dev` port)"
    )
    _tls_options(degrade)
    degrade.set_defaults(func=_guarded(_degrade))
