"""Tool calling and structured output through the Tollgate gateway, from Python.

    pip install -e .            # from the repository root: grpcio and the stubs
    TOLLGATE_API_KEY=... python examples/python/tools.py
    TOLLGATE_API_KEY=... python examples/python/tools.py --city Lisbon

Two requests show the request model beyond `input`:

1. A two-turn tool-calling loop. The first CreateResponse offers a `get_weather` tool
   (its parameters a JSON Schema). When the reply carries `tool_calls`, this script
   runs the tool locally and sends the conversation back: the user's question, the
   assistant turn with the calls, and one ROLE_TOOL message per call naming its id.
   The second reply answers with the tool's result.
2. Structured output: a `json_schema` response_format (strict), whose answer is JSON
   matching the schema; it is parsed and printed.

Exit status: 0 done, 1 a gRPC error or an answer that breaks the contract, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import grpc
from google.protobuf import struct_pb2
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

# The tool's parameters: a JSON Schema object. With strict, OpenAI's rules apply:
# every property required, no others allowed.
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
# The shape of the structured answer.
TRIP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "destination": {"type": "string"},
        "nights": {"type": "integer", "minimum": 1, "maximum": 30},
        "packing_list": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
        },
    },
    "required": ["destination", "nights", "packing_list"],
    "additionalProperties": False,
}
Metadata = tuple[tuple[str, str], ...]


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """A plain dict (a JSON Schema) as the google.protobuf.Struct the proto wants."""
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def get_weather(city: str, unit: str) -> str:
    """The local tool: a made-up forecast, as JSON text for the tool message."""
    celsius = 8 + sum(map(ord, city)) % 20
    temperature = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
    return json.dumps(
        {"city": city, "temperature": temperature, "unit": unit, "sky": "light rain"}
    )


def weather_tool() -> common_pb.Tool:
    """The get_weather tool as the gateway takes it."""
    return common_pb.Tool(
        name="get_weather",
        description="The current weather in a city.",
        parameters=to_struct(WEATHER_PARAMETERS),
        strict=True,
    )


def run_tool(call: common_pb.ToolCall) -> str:
    """Run the tool a call names with its JSON arguments; the result as text."""
    if call.name != "get_weather":
        return json.dumps({"error": f"unknown tool {call.name}"})
    try:
        arguments = json.loads(call.arguments)
        return get_weather(str(arguments["city"]), str(arguments["unit"]))
    except (ValueError, KeyError, TypeError) as error:
        # A failed tool is still an answer: the model sees the error and can retry.
        return json.dumps({"error": f"bad arguments: {error!r}"})


def tool_loop(
    stub: gateway_pb2_grpc.GatewayServiceStub, metadata: Metadata, city: str
) -> int:
    """Ask, run the tools the model calls, send their results, print the answer."""
    question = common_pb.Message(
        role=common_pb.ROLE_USER,
        content=[
            common_pb.ContentPart(text=f"Use get_weather: what is it like in {city}?")
        ],
    )
    tools = [weather_tool()]
    print(f"user: {question.content[0].text}")
    first = stub.CreateResponse(
        gateway_pb.CreateResponseRequest(
            instructions="You answer travel questions.",
            messages=[question],
            tools=tools,
        ),
        metadata=metadata,
        timeout=60,
    )
    if not first.tool_calls:
        print(f"answer (no tool called): {first.output_text}")
        return 1
    # The next request replays the conversation: the question, the assistant's turn
    # with its calls, then one tool message answering each call by its id.
    messages = [
        question,
        common_pb.Message(role=common_pb.ROLE_ASSISTANT, tool_calls=first.tool_calls),
    ]
    for call in first.tool_calls:
        print(f"model calls {call.name} ({call.id}) with {call.arguments}")
        result = run_tool(call)
        print(f"tool {call.name} returns {result}")
        messages.append(
            common_pb.Message(
                role=common_pb.ROLE_TOOL,
                tool_call_id=call.id,
                content=[common_pb.ContentPart(text=result)],
            )
        )
    final = stub.CreateResponse(
        gateway_pb.CreateResponseRequest(
            instructions="You answer travel questions.",
            messages=messages,
            tools=tools,
        ),
        metadata=metadata,
        timeout=60,
    )
    finish = common_pb.FinishReason.Name(final.finish_reason)
    print(f"answer ({finish}): {final.output_text}")
    return 0


def structured_output(
    stub: gateway_pb2_grpc.GatewayServiceStub, metadata: Metadata, city: str
) -> int:
    """Ask for JSON matching TRIP_SCHEMA; parse it and print it."""
    reply = stub.CreateResponse(
        gateway_pb.CreateResponseRequest(
            input=f"Plan a short trip to {city}: how many nights, and what to pack?",
            response_format=common_pb.ResponseFormat(
                json_schema=common_pb.JsonSchemaFormat(
                    name="trip_plan",
                    description="A trip plan with a packing list.",
                    schema=to_struct(TRIP_SCHEMA),
                    strict=True,
                )
            ),
        ),
        metadata=metadata,
        timeout=60,
    )
    try:
        plan = json.loads(reply.output_text)
    except ValueError:
        print(f"not JSON: {reply.output_text}", file=sys.stderr)
        return 1
    print(json.dumps(plan, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    parser.add_argument("--city", default="Paris", help="where the questions are about")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("no API key: pass --key or set TOLLGATE_API_KEY")
    metadata: Metadata = (("authorization", f"Bearer {args.key}"),)
    with grpc.insecure_channel(args.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            print("== tool calling ==")
            if tool_loop(stub, metadata, args.city) != 0:
                return 1
            print("\n== structured output (json_schema trip_plan) ==")
            return structured_output(stub, metadata, args.city)
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call)
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
