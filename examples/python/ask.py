"""Ask the Tollgate gateway from Python with the stubs generated from protos/.

    pip install -e .            # from the repository root: grpcio and the stubs
    TOLLGATE_API_KEY=... python examples/python/ask.py "What is a token bucket?"
    TOLLGATE_API_KEY=... python examples/python/ask.py --stream "Explain backoff"

When the gateway answers RESOURCE_EXHAUSTED (a rate limit, a budget or a full queue),
the google.rpc.Status in the trailers says why (ErrorInfo), which limit (QuotaFailure)
and when to come back (RetryInfo). This client waits that long and tries again, as
long as the wait fits in --max-wait seconds; otherwise it exits with status 3.

Exit status: 0 answered, 1 any other error, 2 usage, 3 still limited after --max-wait.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

EXIT_LIMITED = 3


class Details:
    """The details of a failed call that a client acts on."""

    def __init__(self, error: grpc.Call) -> None:
        self.reason = ""
        self.retry_delay: float | None = None
        self.violations: list[str] = []
        status = rpc_status.from_call(error)
        for packed in status.details if status is not None else ():
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                self.reason = info.reason
            elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                packed.Unpack(retry)
                self.retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
            elif packed.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                packed.Unpack(quota)
                self.violations += [v.subject for v in quota.violations]
            elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                self.violations += [
                    f"{v.field}: {v.description}" for v in bad.field_violations
                ]


def _ask(
    stub: gateway_pb2_grpc.GatewayServiceStub,
    args: argparse.Namespace,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    priority = f"PRIORITY_{args.priority.upper()}"
    if args.stream:
        stream = stub.StreamResponse(
            gateway_pb.StreamResponseRequest(
                input=args.text, priority=priority, user_id=args.user
            ),
            metadata=metadata,
            timeout=args.timeout,
        )
        for event in stream:
            kind = event.WhichOneof("event")
            if kind == "started":
                started = event.started
                cache = common_pb.CacheStatus.Name(started.cache_status)
                print(f"[{started.model}, cache {cache.removeprefix('CACHE_STATUS_')}]")
            elif kind == "delta":
                print(event.delta.text, end="", flush=True)
            elif kind == "completed":
                done = event.completed
                print(
                    f"\n[{done.usage.input_tokens}+{done.usage.output_tokens} tokens, "
                    f"{done.cost_micros} micro-{done.currency_code}]"
                )
        return
    reply = stub.CreateResponse(
        gateway_pb.CreateResponseRequest(
            input=args.text, priority=priority, user_id=args.user
        ),
        metadata=metadata,
        timeout=args.timeout,
    )
    cache = common_pb.CacheStatus.Name(reply.cache_status).removeprefix("CACHE_STATUS_")
    print(reply.output_text)
    print(
        f"[{reply.model}, cache {cache}, {reply.usage.input_tokens}+"
        f"{reply.usage.output_tokens} tokens, {reply.cost_micros} "
        f"micro-{reply.currency_code}, {reply.request_id}]"
    )


def call_with_retry(
    call: Callable[[], None], max_wait: float, sleep: Callable[[float], None]
) -> int:
    """Run ``call``; on RESOURCE_EXHAUSTED wait out RetryInfo while it fits max_wait."""
    waited = 0.0
    while True:
        try:
            call()
            return 0
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call)
            details = Details(error)
            code = error.code()
            print(f"{code.name} {details.reason}: {error.details()}", file=sys.stderr)
            for violation in details.violations:
                print(f"  {violation}", file=sys.stderr)
            if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                return 1
            if details.retry_delay is None:
                return EXIT_LIMITED
            if waited + details.retry_delay > max_wait:
                print(
                    f"retry after {details.retry_delay:.1f} s: more than --max-wait",
                    file=sys.stderr,
                )
                return EXIT_LIMITED
            print(f"retrying in {details.retry_delay:.1f} s", file=sys.stderr)
            sleep(details.retry_delay)
            waited += details.retry_delay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text", help="the question")
    parser.add_argument(
        "--address",
        default=os.environ.get("TOLLGATE_GATEWAY_ADDRESS", "127.0.0.1:50051"),
        help="host:port of the gateway (TOLLGATE_GATEWAY_ADDRESS)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("TOLLGATE_API_KEY"),
        help="API key (TOLLGATE_API_KEY)",
    )
    parser.add_argument("--stream", action="store_true", help="use StreamResponse")
    parser.add_argument(
        "--priority",
        default="standard",
        choices=["critical", "realtime", "standard", "batch", "low"],
    )
    parser.add_argument("--user", default="", help="end user within your tenant")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline, s")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=30.0,
        help="longest total wait for RetryInfo before giving up, s",
    )
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("no API key: pass --key or set TOLLGATE_API_KEY")
    metadata = (
        ("authorization", f"Bearer {args.key}"),
        # One id for every attempt: the gateway's logs and ledger tie them together.
        ("x-request-id", f"req_py_{uuid.uuid4().hex}"),
    )
    with grpc.insecure_channel(args.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        return call_with_retry(
            lambda: _ask(stub, args, metadata), args.max_wait, time.sleep
        )


if __name__ == "__main__":
    sys.exit(main())
