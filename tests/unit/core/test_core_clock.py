"""FakeClock and SystemClock."""

from __future__ import annotations

import time

import pytest

from services.core.clock import Clock, FakeClock, SystemClock

NEW_YEAR_2026 = 1_767_225_600.0


def test_fake_clock_starts_at_a_fixed_point() -> None:
    clock = FakeClock()
    assert clock.now() == NEW_YEAR_2026
    assert clock.monotonic() == 0.0


def test_fake_clock_start_can_be_chosen() -> None:
    clock = FakeClock(start=1_000.0)
    assert clock.now() == 1_000.0
    assert clock.monotonic() == 0.0


def test_fake_clock_stands_still_until_advanced() -> None:
    clock = FakeClock()
    assert [clock.now() for _ in range(3)] == [NEW_YEAR_2026] * 3
    assert [clock.monotonic() for _ in range(3)] == [0.0] * 3


def test_advance_moves_wall_and_monotonic_time_together() -> None:
    clock = FakeClock()
    clock.advance(1.5)
    clock.advance(60.0)
    assert clock.now() == NEW_YEAR_2026 + 61.5
    assert clock.monotonic() == 61.5


def test_advance_by_zero_is_allowed() -> None:
    clock = FakeClock()
    clock.advance(0.0)
    assert (clock.now(), clock.monotonic()) == (NEW_YEAR_2026, 0.0)


def test_fake_clock_cannot_go_back() -> None:
    clock = FakeClock()
    clock.advance(10.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-0.001)
    assert (clock.now(), clock.monotonic()) == (NEW_YEAR_2026 + 10.0, 10.0)


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [FakeClock(), SystemClock()]
    assert all(isinstance(clock.now(), float) for clock in clocks)
    assert all(isinstance(clock.monotonic(), float) for clock in clocks)


def test_system_clock_reads_the_real_clocks() -> None:
    clock = SystemClock()
    before_wall, before_mono = time.time(), time.monotonic()
    wall, mono = clock.now(), clock.monotonic()
    assert before_wall <= wall <= time.time()
    assert before_mono <= mono <= time.monotonic()
