"""Batch messages to lane objects and back."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tollgate.common.v1 import common_pb2 as common_pb
from tollgate.gateway.v1 import gateway_pb2 as gateway_pb

from services.core.errors import InvalidArgumentError
from services.gateway.batch_codec import (
    STATUS_TO_PROTO,
    decode_batch_id,
    decode_submit,
    encode_cancel,
    encode_get,
    encode_result,
    encode_submit,
)
from services.gateway.batches import (
    BatchStatus,
    BatchView,
    ItemError,
    ItemResult,
)
from services.gateway.domain import RequestType, Usage
from tests.unit.gateway.gateway_fakes import text_item

VIEW = BatchView(
    batch_id="batch_1",
    status=BatchStatus.IN_PROGRESS,
    total_items=3,
    completed_items=1,
    failed_items=1,
    created_at=1_767_225_600.25,
    finished_at=None,
    cost_micros=42,
    metadata={"job": "x"},
)


def test_decode_submit_keeps_every_field() -> None:
    request = gateway_pb.SubmitBatchRequest(
        items=[
            gateway_pb.BatchItem(
                custom_id="a",
                input="hello",
                instructions="brief",
                model=" gpt-4.1 ",
                request_type=common_pb.REQUEST_TYPE_CLASSIFY,
                max_output_tokens=20,
                temperature=0.0,
            ),
            gateway_pb.BatchItem(custom_id="b", input="again"),
        ],
        metadata={"job": "x"},
        user_id="carol",
    )
    items, metadata, user_id = decode_submit(request)
    assert items == [
        text_item(
            "a",
            "hello",
            "brief",
            model="gpt-4.1",
            request_type=RequestType.CLASSIFY,
            max_output_tokens=20,
            temperature=0.0,
        ),
        text_item("b", "again"),
    ]
    assert (metadata, user_id) == ({"job": "x"}, "carol")


def test_an_unknown_request_type_is_a_field_violation() -> None:
    item = gateway_pb.BatchItem(custom_id="a", input="x")
    item.request_type = 99  # type: ignore[assignment]  # an enum value from the future
    with pytest.raises(InvalidArgumentError) as caught:
        decode_submit(
            gateway_pb.SubmitBatchRequest(items=[gateway_pb.BatchItem(), item])
        )
    assert [v.field for v in caught.value.violations] == [
        "items[0].input",
        "items[1].request_type",
    ]


@pytest.mark.parametrize("batch_id", ["", "   ", "b" * 129])
def test_decode_batch_id_refuses_empty_and_long_ids(batch_id: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_batch_id(gateway_pb.GetBatchRequest(batch_id=batch_id))
    assert [v.field for v in caught.value.violations] == ["batch_id"]
    assert decode_batch_id(gateway_pb.CancelBatchRequest(batch_id=" b1 ")) == "b1"


def test_every_status_has_its_own_proto_value() -> None:
    assert set(STATUS_TO_PROTO) == set(BatchStatus)
    assert len(set(STATUS_TO_PROTO.values())) == len(BatchStatus)
    assert gateway_pb.BATCH_STATUS_UNSPECIFIED not in STATUS_TO_PROTO.values()


def test_encode_batch_responses() -> None:
    batch = encode_submit(VIEW).batch
    assert batch.batch_id == "batch_1"
    assert batch.status == gateway_pb.BATCH_STATUS_IN_PROGRESS
    assert (batch.total_items, batch.completed_items, batch.failed_items) == (3, 1, 1)
    assert batch.created_at.ToNanoseconds() == 1_767_225_600_250_000_000
    assert not batch.HasField("finished_at")
    assert (batch.cost_micros, dict(batch.metadata)) == (42, {"job": "x"})
    assert encode_get(VIEW).batch == batch

    done = replace(VIEW, status=BatchStatus.CANCELLED, finished_at=1_767_225_700.0)
    cancelled = encode_cancel(done).batch
    assert cancelled.status == gateway_pb.BATCH_STATUS_CANCELLED
    assert cancelled.finished_at.seconds == 1_767_225_700


def test_encode_result_with_and_without_error() -> None:
    ok = encode_result(
        ItemResult("a", "text", "gpt-4.1-mini", Usage(10, 2, 5), 7, None)
    )
    assert (ok.custom_id, ok.output_text, ok.model, ok.cost_micros) == (
        "a",
        "text",
        "gpt-4.1-mini",
        7,
    )
    assert (ok.usage.input_tokens, ok.usage.cached_input_tokens) == (10, 2)
    assert ok.usage.output_tokens == 5
    assert not ok.HasField("error")
    failed = encode_result(
        ItemResult(
            "b", "", "gpt-4.1-mini", Usage(), 0, ItemError("server_error", "boom")
        )
    )
    assert (failed.error.code, failed.error.message) == ("server_error", "boom")
