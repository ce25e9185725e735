from __future__ import annotations

from dataclasses import replace

import numpy as np
from structlog.testing import capture_logs

from services.core.clock import FakeClock
from services.core.errors import BackendUnavailableError
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import (
    FEATURE_NAMES,
    ComplexityModel,
    FloatArray,
    load_complexity_model,
)
from services.router.domain import Classifier, Router, RouteRequest
from services.router.enums import (
    Complexity,
    Priority,
    QualitySignal,
    RequestType,
    ShadowVerdict,
)
from services.router.table import load_routing_table

TABLE = load_routing_table(None)
MODEL = load_complexity_model()


class FakeEncoder:
    """Fixed logits (a moderate prompt), recording what it read; fails when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.read: list[tuple[str, str]] = []
        self.fail = fail

    async def logits(
        self, text: str, previous: str, measurements: FloatArray
    ) -> FloatArray:
        if self.fail:
            raise BackendUnavailableError("no model", reason="ENCODER_UNAVAILABLE")
        assert measurements.shape == (len(FEATURE_NAMES),)
        self.read.append((text, previous))
        return np.array([4.0, 2.0, -6.0])

    async def close(self) -> None:
        pass


def _request(
    text: str, request_id: str = "req_1", tenant_id: str = "acme", **extra: object
) -> RouteRequest:
    return RouteRequest(
        tenant_id=tenant_id,
        user_id="user_0001",
        priority=Priority.STANDARD,
        request_type=RequestType.CHAT,
        requested_model="auto",
        input=text,
        input_tokens=10,
        max_output_tokens=0,
        request_id=request_id,
        **extra,  # type: ignore[arg-type]
    )


def _router(
    encoder: FakeEncoder | None = None,
    *,
    metrics: InMemoryMetricsStore | None = None,
    shadow: Classifier | None = None,
    quality_bias: float | None = None,
) -> Router:
    return Router(
        TABLE,
        InMemoryControlStore(),
        metrics or InMemoryMetricsStore(),
        # The encoder runs for every request (the student is never sure enough).
        Classifier(MODEL, encoder, quality_bias, student_confidence=1.0),
        FakeClock(),
        shadow=shadow,
    )


async def test_the_encoder_reads_the_input_and_the_user_message_before_it() -> None:
    encoder = FakeEncoder()

    decision = await _router(encoder).route(
        _request("now make it thread-safe", previous_input="def push(item): ...")
    )

    assert encoder.read == [("now make it thread-safe", "def push(item): ...")]
    # The encoder's logits decide: P(>= moderate) high, P(complex) low.
    assert decision.complexity is Complexity.MODERATE


async def test_a_shadow_naming_the_same_encoder_reuses_its_logits() -> None:
    encoder, other = FakeEncoder(), FakeEncoder()
    same = ComplexityModel.from_json(
        MODEL.to_json().replace(MODEL.version, "candidate", 1),
        MODEL.encoder.path.parent,
    )
    retrained = replace(same, encoder=replace(same.encoder, sha256="0" * 64))

    await _router(
        encoder, shadow=Classifier(same, encoder, student_confidence=1.0)
    ).route(_request("hi"))
    await _router(
        encoder, shadow=Classifier(retrained, other, student_confidence=1.0)
    ).route(_request("hi"))

    assert len(encoder.read) == 2  # once per request: the first shadow reused it
    assert len(other.read) == 1  # the retrained encoder ran for its own shadow


async def test_a_failing_encoder_falls_back_to_the_student() -> None:
    with capture_logs() as logs:
        decision = await _router(FakeEncoder(fail=True)).route(
            _request("What is the capital of Peru?")
        )

    assert decision.complexity is Complexity.TRIVIAL
    assert any(e["event"] == "complexity_encoder_failed" for e in logs)


async def test_the_quality_bias_trades_cost_for_quality() -> None:
    prompt = (
        "Our checkout latency doubled after the last deploy. Walk me through how "
        "to find out why."
    )

    cheap = await _router(quality_bias=-5.0).route(_request(prompt))
    careful = await _router(quality_bias=5.0).route(_request(prompt))

    assert cheap.tier != "premium"
    assert careful.tier == "premium"


async def test_quality_signals_count_once_against_the_tenants_decision() -> None:
    metrics = InMemoryMetricsStore()
    router = _router(metrics=metrics, quality_bias=-5.0)
    await router.route(_request("What is the capital of Peru?", request_id="r1"))
    await router.route(_request("Thanks!", request_id="r2", tenant_id="globex"))

    first = await router.record_quality("r1", QualitySignal.THUMBS_DOWN)
    again = await router.record_quality("r1", QualitySignal.THUMBS_DOWN)
    escalated = await router.record_quality("r1", QualitySignal.ESCALATED)
    unknown = await router.record_quality("nope", QualitySignal.THUMBS_UP)

    assert first is not None and first.tenant_id == "acme" and first.downgraded
    assert (again, unknown) == (None, None)
    assert escalated is not None
    stats = dict((await router.routing_stats()).tenants)
    acme = stats["acme"]
    assert (acme.requests, acme.downgraded) == (1, 1)
    assert acme.signals == {
        QualitySignal.THUMBS_DOWN: 1,
        QualitySignal.ESCALATED: 1,
    }
    assert acme.downgraded_signals == acme.signals
    assert stats["globex"].requests == 1


async def test_only_auto_decisions_are_remembered_for_signals() -> None:
    router = _router()
    named = RouteRequest(
        tenant_id="acme",
        user_id="u",
        priority=Priority.STANDARD,
        request_type=RequestType.CHAT,
        requested_model="gpt-4.1",
        input="hi",
        input_tokens=1,
        max_output_tokens=0,
        request_id="r9",
    )
    await router.route(named)

    assert await router.record_quality("r9", QualitySignal.THUMBS_UP) is None
    assert (await router.routing_stats()).tenants == ()


async def test_the_remembered_decisions_are_bounded() -> None:
    metrics = InMemoryMetricsStore(remembered_routes=2)
    router = _router(metrics=metrics)
    for index in range(3):
        await router.route(_request("hi", request_id=f"r{index}"))

    assert await router.record_quality("r0", QualitySignal.THUMBS_UP) is None
    assert await router.record_quality("r2", QualitySignal.THUMBS_UP) is not None


async def test_shadow_mode_logs_and_counts_what_the_shadow_would_have_chosen() -> None:
    metrics = InMemoryMetricsStore()
    shadow_model = ComplexityModel.from_json(
        MODEL.to_json().replace(MODEL.version, "candidate", 1),
        MODEL.encoder.path.parent,
    )
    router = _router(
        metrics=metrics,
        quality_bias=-5.0,
        shadow=Classifier(shadow_model, None, quality_bias=5.0),
    )

    with capture_logs() as logs:
        decision = await router.route(
            _request(
                "Design a rate limiter for a multi-region API and prove it never "
                "admits more than the global limit."
            )
        )

    (event,) = [e for e in logs if e["event"] == "route_shadow"]
    assert event["served_tier"] == decision.tier
    assert event["shadow_model"] == "candidate"
    assert event["shadow_tier"] == "premium"
    assert "Design" not in str(event)  # never the prompt
    counts = dict((await router.routing_stats()).tenants)["acme"]
    expected = (
        ShadowVerdict.SAME if decision.tier == "premium" else ShadowVerdict.HIGHER
    )
    assert counts.shadow == {expected: 1}
