"""The busy gauge's arithmetic and its sliding window (an injected time, no server)."""

from __future__ import annotations

import pytest

from serving.busy import BusyMeter, busy


def test_busy_is_the_larger_of_utilisation_and_queue_delay_over_its_budget() -> None:
    assert busy(5.0, 10.0, wait_sum_s=0.01, waits=10, queue_budget_s=0.05) == 0.5
    assert busy(1.0, 10.0, wait_sum_s=4.0, waits=100, queue_budget_s=0.05) == pytest.approx(0.8)
    assert busy(0.0, 10.0, 0.0, 0, 0.05, oldest_wait_s=0.1) == pytest.approx(2.0)  # stalled
    assert busy(0.0, 10.0, 0.0, 0, 0.05) == 0.0


def test_the_meter_forgets_what_left_its_window() -> None:
    meter = BusyMeter(window_s=10, queue_budget_s=0.05)
    for second in range(10):
        meter.batch(compute_s=0.9, waits_s=[0.001], now=100.0 + second)
    assert meter.value(now=109.5) == pytest.approx(0.9)
    assert meter.value(now=115.5) == pytest.approx(0.36)  # 4 of the 10 seconds remain
    assert meter.value(now=130.0) == 0.0
    assert meter.value(now=130.0, oldest_wait_s=0.025) == pytest.approx(0.5)


def test_a_lagging_event_loop_makes_the_replica_busy_and_recovers() -> None:
    meter = BusyMeter(window_s=10, queue_budget_s=0.05)
    for _ in range(20):
        meter.lag(0.1)  # HTTP saturates the loop: timers fire 100 ms late
    assert meter.value(now=100.0) == pytest.approx(2.0, rel=0.05)
    for _ in range(30):
        meter.lag(0.0)
    assert meter.value(now=100.0) < 0.1
