"""The per-line failure draw of simulated batches."""

from __future__ import annotations

from services.simulator.batches import line_fails

IDS = [f"request-{i:05d}" for i in range(10_000)]


def test_rate_zero_never_fails_and_rate_one_always_fails() -> None:
    assert not any(line_fails(0, i, 0.0) for i in IDS)
    assert all(line_fails(0, i, 1.0) for i in IDS)


def test_the_failed_share_follows_the_rate() -> None:
    failed = sum(line_fails(0, i, 0.2) for i in IDS)
    assert 1_800 < failed < 2_200


def test_the_draw_is_a_function_of_seed_and_custom_id() -> None:
    first = [line_fails(3, i, 0.5) for i in IDS[:200]]
    assert [line_fails(3, i, 0.5) for i in IDS[:200]] == first
    assert [line_fails(4, i, 0.5) for i in IDS[:200]] != first
