"""A router classifying with the shipped complexity encoder, for the router tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.core.clock import FakeClock
from services.router.adapters.encoder import LazyComplexityEncoder
from services.router.adapters.memory import InMemoryControlStore, InMemoryMetricsStore
from services.router.complexity import load_complexity_model
from services.router.domain import Classifier, Router
from services.router.table import load_routing_table


@asynccontextmanager
async def router_with_shipped_encoder(
    student_confidence: float | None = None,
) -> AsyncIterator[Router]:
    """The built-in table and the shipped model; the encoder closed on exit.

    ``student_confidence``: 1.0 runs the encoder for every request; unset keeps
    the model's cascade.
    """
    model = load_complexity_model()
    encoder = LazyComplexityEncoder(model.encoder.path, model.encoder.sha256)
    try:
        yield Router(
            load_routing_table(None),
            InMemoryControlStore(),
            InMemoryMetricsStore(),
            Classifier(model, encoder, student_confidence=student_confidence),
            FakeClock(),
        )
    finally:
        await encoder.close()
