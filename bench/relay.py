"""The framework floor: a relay with no gateway logic, on Tollgate's own frameworks.

It answers what Tollgate's doors answer, on the same libraries, and does nothing
else: ``POST /v1/chat/completions`` on aiohttp and ``GatewayService/CreateResponse``
on grpc.aio each decode the request, send the user text to the upstream's
Responses API on one pooled aiohttp session (as Tollgate's upstream client does),
decode its answer, and encode a reply. No key check, count, route, limit,
budget, cache, ledger, metrics or log line.

``bench/peers.py`` measures it beside Tollgate in the same run: what it spends per
request is what a Python gateway on aiohttp and grpc.aio spends before it does
any of a gateway's work, so it is the floor under Tollgate's CPU per request.

    python bench/relay.py --upstream http://127.0.0.1:8000/v1 --api-key KEY \
        --http-port 8080 --grpc-port 50051
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import aiohttp
import grpc
import uvloop
from aiohttp import web
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

MAX_OUTPUT_TOKENS = 256


class Relay:
    """One upstream session shared by both doors."""

    def __init__(self, upstream: str, api_key: str) -> None:
        self._url = f"{upstream.rstrip('/')}/responses"
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
        }
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Open the pooled upstream session (Tollgate's connector settings)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=5.0)
        )

    async def close(self) -> None:
        """Close the upstream session."""
        if self._session is not None:
            await self._session.close()

    async def answer(self, model: str, text: str) -> tuple[str, dict[str, int]]:
        """The upstream's answer text and usage for one user message."""
        assert self._session is not None
        body = {
            "model": model,
            "input": [{"role": "user", "content": text}],
            "max_output_tokens": MAX_OUTPUT_TOKENS,
            "store": False,
        }
        async with self._session.post(
            self._url, data=json.dumps(body), headers=self._headers
        ) as response:
            payload: dict[str, Any] = json.loads(await response.read())
        if response.status != 200:
            raise RuntimeError(f"upstream answered {response.status}")
        parts = [
            content.get("text", "")
            for item in payload.get("output", ())
            if item.get("type") == "message"
            for content in item.get("content", ())
        ]
        return "".join(parts), payload.get("usage") or {}

    async def chat(self, request: web.Request) -> web.Response:
        """``POST /v1/chat/completions``: the last message relayed."""
        body = json.loads(await request.read())
        model = body.get("model", "")
        text, usage = await self.answer(model, str(body["messages"][-1]["content"]))
        reply = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage.get("input_tokens", 0),
                "completion_tokens": usage.get("output_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        }
        return web.Response(body=json.dumps(reply), content_type="application/json")

    async def create_response(
        self, request: gateway_pb.CreateResponseRequest, _context: Any
    ) -> gateway_pb.CreateResponseResponse:
        """``CreateResponse``: the input relayed."""
        text, usage = await self.answer(request.model, request.input)
        return gateway_pb.CreateResponseResponse(
            output_text=text,
            model=request.model,
            cache_status=common_pb.CACHE_STATUS_SKIPPED,
            usage=common_pb.Usage(
                input_tokens=usage.get("input_tokens", 0),
                output_tokens=usage.get("output_tokens", 0),
            ),
            request_id=uuid.uuid4().hex,
        )


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(args: argparse.Namespace) -> None:
    """Both doors until cancelled."""
    relay = Relay(args.upstream, args.api_key)
    await relay.open()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tollgate.gateway.v1.GatewayService",
                {
                    "CreateResponse": grpc.unary_unary_rpc_method_handler(
                        relay.create_response,
                        request_deserializer=gateway_pb.CreateResponseRequest.FromString,
                        response_serializer=gateway_pb.CreateResponseResponse.SerializeToString,
                    )
                },
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    await server.start()
    # The HTTP door opens last: once /v1/health answers, both doors do.
    app = web.Application()
    app.router.add_post("/v1/chat/completions", relay.chat)
    app.router.add_get("/v1/health", _health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.http_port).start()
    print(f"relay: http {args.http_port}, grpc {args.grpc_port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(0)
        await runner.cleanup()
        await relay.close()


def main() -> None:
    """Parse the ports and the upstream, and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the upstream's base URL")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
