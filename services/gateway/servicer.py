"""GatewayService over gRPC: authenticate, validate, decode, run the flow, encode."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb
from tollgate.gateway.v1 import gateway_pb2_grpc

from services.core import prototime
from services.core.breaker import BreakerState
from services.core.common_codec import finish_reason_proto, tool_calls_proto
from services.core.context import current_request_id, metadata_value
from services.core.conversation import validate_prompt
from services.core.errors import (
    FieldViolation,
    InvalidArgumentError,
    UnimplementedError,
)
from services.gateway.access import note_principal
from services.gateway.auth import Authenticator
from services.gateway.batch_codec import (
    decode_batch_id,
    decode_submit,
    encode_cancel,
    encode_get,
    encode_result,
    encode_submit,
)
from services.gateway.batches import BatchService
from services.gateway.clients import (
    CACHE_STATUS_TO_PROTO,
    DEGRADATION_TO_PROTO,
    PRIORITY_FROM_PROTO,
    PRIORITY_TO_PROTO,
    REQUEST_TYPE_FROM_PROTO,
    usage_proto,
)
from services.gateway.domain import (
    Principal,
    Priority,
    ResponseReply,
    ResponseRequest,
    StreamDelta,
    StreamEvent,
    StreamStart,
    ToolCallDelta,
)
from services.gateway.key_codec import (
    decode_create,
    decode_grace_seconds,
    decode_key_id,
    encode_key,
)
from services.gateway.keys import KeyService
from services.gateway.orchestrator import Orchestrator
from services.gateway.prompt_codec import decode_prompt
from services.gateway.usage import UsageReader
from services.gateway.usage_codec import (
    decode_report_request,
    decode_usage_request,
    encode_report,
    encode_usage,
)

VERSION = "0.1.0"
CURRENCY = "USD"

MAX_INSTRUCTIONS_BYTES = 256 * 1024
MAX_MODEL_CHARS = 128
MAX_USER_ID_CHARS = 128
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_VALUE_BYTES = 512
MAX_OUTPUT_TOKENS_LIMIT = 128_000
MAX_SAFETY_IDENTIFIER_CHARS = 64

_BREAKER_STATES = {
    BreakerState.CLOSED: gateway_pb.BREAKER_STATE_CLOSED,
    BreakerState.OPEN: gateway_pb.BREAKER_STATE_OPEN,
    BreakerState.HALF_OPEN: gateway_pb.BREAKER_STATE_HALF_OPEN,
}


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def decode_request(
    message: gateway_pb.CreateResponseRequest | gateway_pb.StreamResponseRequest,
) -> ResponseRequest:
    """Validate a CreateResponseRequest; every problem becomes a field violation."""
    prompt, violations = decode_prompt(message)
    if not violations:
        violations.extend(validate_prompt(prompt, input_shorthand=bool(message.input)))

    def bad(field: str, description: str) -> None:
        violations.append(FieldViolation(field, description))

    if _utf8_len(message.instructions) > MAX_INSTRUCTIONS_BYTES:
        bad("instructions", f"must be at most {MAX_INSTRUCTIONS_BYTES} bytes")
    if len(message.model) > MAX_MODEL_CHARS:
        bad("model", f"must be at most {MAX_MODEL_CHARS} characters")
    if message.priority not in PRIORITY_FROM_PROTO:
        bad("priority", f"unknown priority value {message.priority}")
    if message.request_type not in REQUEST_TYPE_FROM_PROTO:
        bad("request_type", f"unknown request type value {message.request_type}")
    top_p: float | None = None
    if message.HasField("top_p"):
        top_p = message.top_p
        if not (math.isfinite(top_p) and 0.0 <= top_p <= 1.0):
            bad("top_p", "must be between 0 and 1")
    if len(message.safety_identifier) > MAX_SAFETY_IDENTIFIER_CHARS:
        bad(
            "safety_identifier",
            f"must be at most {MAX_SAFETY_IDENTIFIER_CHARS} characters",
        )
    if message.max_output_tokens < 0:
        bad("max_output_tokens", "must not be negative")
    elif message.max_output_tokens > MAX_OUTPUT_TOKENS_LIMIT:
        bad("max_output_tokens", f"must be at most {MAX_OUTPUT_TOKENS_LIMIT}")
    temperature: float | None = None
    if message.HasField("temperature"):
        temperature = message.temperature
        if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
            bad("temperature", "must be between 0 and 2")
    if len(message.user_id) > MAX_USER_ID_CHARS:
        bad("user_id", f"must be at most {MAX_USER_ID_CHARS} characters")
    if len(message.metadata) > MAX_METADATA_PAIRS:
        bad("metadata", f"must have at most {MAX_METADATA_PAIRS} entries")
    for key, value in message.metadata.items():
        if not key or _utf8_len(key) > MAX_METADATA_KEY_BYTES:
            bad(
                f"metadata[{key[:32]!r}]",
                f"keys must be 1 to {MAX_METADATA_KEY_BYTES} bytes",
            )
        if _utf8_len(value) > MAX_METADATA_VALUE_BYTES:
            bad(
                f"metadata[{key[:32]!r}]",
                f"values must be at most {MAX_METADATA_VALUE_BYTES} bytes",
            )
    asynchronous = (
        isinstance(message, gateway_pb.CreateResponseRequest) and message.asynchronous
    )
    if asynchronous and PRIORITY_FROM_PROTO.get(message.priority) not in (
        Priority.BATCH,
        Priority.LOW,
    ):
        bad("asynchronous", "needs priority PRIORITY_BATCH or PRIORITY_LOW")
    if violations:
        raise InvalidArgumentError(violations)
    return ResponseRequest(
        prompt=prompt,
        model=message.model.strip(),
        priority=PRIORITY_FROM_PROTO[message.priority],
        request_type=REQUEST_TYPE_FROM_PROTO[message.request_type],
        max_output_tokens=message.max_output_tokens,
        temperature=temperature,
        user_id=message.user_id,
        metadata=dict(message.metadata),
        cache_bypass=message.cache_bypass,
        asynchronous=asynchronous,
        top_p=top_p,
        safety_identifier=message.safety_identifier,
    )


def encode_reply(reply: ResponseReply) -> gateway_pb.CreateResponseResponse:
    """The CreateResponseResponse for a reply."""
    return gateway_pb.CreateResponseResponse(
        output_text=reply.output_text,
        model=reply.model,
        deployment=reply.deployment,
        cache_status=CACHE_STATUS_TO_PROTO[reply.cache_status],
        similarity=reply.similarity,
        usage=usage_proto(reply.usage),
        cost_micros=reply.cost_micros,
        request_id=reply.request_id,
        degradation_level=DEGRADATION_TO_PROTO[reply.degradation_level],
        input_truncated=reply.input_truncated,
        input_tokens_dropped=reply.input_tokens_dropped,
        output_truncated=reply.output_truncated,
        currency_code=CURRENCY,
        ticket_id=reply.ticket_id,
        latency=_duration(reply.latency_seconds),
        cache_age=_duration(reply.cache_age_seconds),
        tool_calls=tool_calls_proto(reply.tool_calls),
        finish_reason=finish_reason_proto(reply.finish_reason),
        semantic_check=reply.semantic_check,
    )


def encode_stream_event(event: StreamEvent) -> gateway_pb.StreamResponseResponse:
    """The StreamResponseResponse for one stream event."""
    if isinstance(event, StreamStart):
        return gateway_pb.StreamResponseResponse(
            started=gateway_pb.StreamStarted(
                request_id=event.request_id,
                model=event.model,
                deployment=event.deployment,
                cache_status=CACHE_STATUS_TO_PROTO[event.cache_status],
                degradation_level=DEGRADATION_TO_PROTO[event.degradation_level],
                input_truncated=event.input_truncated,
                similarity=event.similarity,
                cache_age=_duration(event.cache_age_seconds),
                input_tokens_dropped=event.input_tokens_dropped,
                semantic_check=event.semantic_check,
            )
        )
    if isinstance(event, StreamDelta):
        return gateway_pb.StreamResponseResponse(
            delta=gateway_pb.TextDelta(text=event.text)
        )
    if isinstance(event, ToolCallDelta):
        return gateway_pb.StreamResponseResponse(
            tool_call_delta=gateway_pb.ToolCallDelta(
                index=event.index,
                id=event.id,
                name=event.name,
                arguments_delta=event.arguments_delta,
            )
        )
    return gateway_pb.StreamResponseResponse(
        completed=gateway_pb.StreamCompleted(
            usage=usage_proto(event.usage),
            cost_micros=event.cost_micros,
            currency_code=CURRENCY,
            output_truncated=event.output_truncated,
            finish_reason=finish_reason_proto(event.finish_reason),
            tool_calls=tool_calls_proto(event.tool_calls),
        )
    )


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    return None if seconds is None else prototime.duration(seconds)


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """The front door."""

    def __init__(
        self,
        keys: Authenticator,
        orchestrator: Orchestrator,
        batches: BatchService,
        *,
        usage: UsageReader,
        key_admin: KeyService | None = None,
    ) -> None:
        self._keys = keys
        self._key_admin = key_admin
        self._orchestrator = orchestrator
        self._batches = batches
        self._usage = usage

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        value = metadata_value(context.invocation_metadata(), "authorization")
        principal = self._keys.authenticate(value if isinstance(value, str) else "")
        note_principal(principal)
        return principal

    async def CreateResponse(
        self,
        request: gateway_pb.CreateResponseRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.CreateResponseResponse:
        """Answer one request through the whole pipeline."""
        principal = self._authenticate(context)
        decoded = decode_request(request)
        reply = await self._orchestrator.create_response(
            principal, decoded, current_request_id(), context.time_remaining()
        )
        return encode_reply(reply)

    async def StreamResponse(
        self,
        request: gateway_pb.StreamResponseRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[gateway_pb.StreamResponseResponse]:
        """Stream one answer through the whole pipeline."""
        principal = self._authenticate(context)
        decoded = decode_request(request)
        events = self._orchestrator.stream_response(
            principal, decoded, current_request_id(), context.time_remaining()
        )
        async for event in events:
            yield encode_stream_event(event)

    async def SubmitBatch(
        self,
        request: gateway_pb.SubmitBatchRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.SubmitBatchResponse:
        """Accept many requests for the Batch API lane."""
        principal = self._authenticate(context)
        return encode_submit(
            await self._batches.submit(principal, *decode_submit(request))
        )

    async def GetBatch(
        self,
        request: gateway_pb.GetBatchRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.GetBatchResponse:
        """A batch's (or ticket's) progress."""
        principal = self._authenticate(context)
        return encode_get(await self._batches.get(principal, decode_batch_id(request)))

    async def ListBatchResults(
        self,
        request: gateway_pb.ListBatchResultsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[gateway_pb.ListBatchResultsResponse]:
        """A batch's finished items, in submission order."""
        principal = self._authenticate(context)
        async for result in self._batches.results(principal, decode_batch_id(request)):
            yield encode_result(result)

    async def CancelBatch(
        self,
        request: gateway_pb.CancelBatchRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.CancelBatchResponse:
        """Cancel a batch that has not finished."""
        principal = self._authenticate(context)
        return encode_cancel(
            await self._batches.cancel(principal, decode_batch_id(request))
        )

    async def GetStatus(
        self,
        request: gateway_pb.GetStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.GetStatusResponse:
        """Breakers, degradation level and outbox depth."""
        self._authenticate(context)
        response = gateway_pb.GetStatusResponse(
            degradation_level=DEGRADATION_TO_PROTO[
                self._orchestrator.degradation_level
            ],
            in_flight=self._orchestrator.queue.in_flight,
            outbox_depth=await self._orchestrator.outbox_depth(),
            version=VERSION,
        )
        for priority, stats in self._orchestrator.queue.stats.items():
            response.queues.add(
                priority=PRIORITY_TO_PROTO[priority],
                depth=stats.depth,
                admitted=stats.admitted,
                rejected=stats.rejected,
                p50_wait_ms=stats.p50_wait_seconds * 1000,
            )
        for snapshot in self._orchestrator.breakers():
            status = response.breakers.add(
                name=snapshot.name,
                state=_BREAKER_STATES[snapshot.state],
                failure_count=snapshot.failure_count,
            )
            if snapshot.opened_at is not None:
                status.opened_at.CopyFrom(prototime.timestamp(snapshot.opened_at))
        return response

    async def GetUsage(
        self,
        request: gateway_pb.GetUsageRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.GetUsageResponse:
        """The calling key's own usage, budgets left and rate-limit headroom."""
        principal = self._authenticate(context)
        query = decode_usage_request(request)
        return encode_usage(
            await self._usage.usage(principal, query.start, query.end, query.model)
        )

    async def GetUsageReport(
        self,
        request: gateway_pb.GetUsageReportRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.GetUsageReportResponse:
        """An operator's report of every key's usage (admin key: the envelope)."""
        query = decode_report_request(request)
        return encode_report(
            await self._usage.report(
                query.tenant_id, query.start, query.end, query.group_by
            )
        )

    def _key_service(self) -> KeyService:
        if self._key_admin is None:
            raise UnimplementedError("this gateway has no key store")
        return self._key_admin

    async def CreateKey(
        self,
        request: gateway_pb.CreateKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.CreateKeyResponse:
        """Make an API key (admin RPC); its secret is in this response only."""
        service = self._key_service()
        record, secret = await service.create(decode_create(request))
        return gateway_pb.CreateKeyResponse(
            key=encode_key(record, service.now()), secret=secret
        )

    async def ListKeys(
        self,
        request: gateway_pb.ListKeysRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.ListKeysResponse:
        """List API keys without their secrets (admin RPC)."""
        service = self._key_service()
        records = await service.list(request.tenant_id.strip(), request.include_revoked)
        now = service.now()
        return gateway_pb.ListKeysResponse(
            keys=[encode_key(record, now) for record in records]
        )

    async def RevokeKey(
        self,
        request: gateway_pb.RevokeKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.RevokeKeyResponse:
        """Revoke a stored API key (admin RPC)."""
        service = self._key_service()
        record = await service.revoke(decode_key_id(request))
        return gateway_pb.RevokeKeyResponse(key=encode_key(record, service.now()))

    async def RotateKey(
        self,
        request: gateway_pb.RotateKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb.RotateKeyResponse:
        """Give a stored API key a new secret (admin RPC)."""
        service = self._key_service()
        key_id = decode_key_id(request)
        record, secret = await service.rotate(key_id, decode_grace_seconds(request))
        return gateway_pb.RotateKeyResponse(
            key=encode_key(record, service.now()), secret=secret
        )
