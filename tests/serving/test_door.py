"""The door's rule: batch-class requests are refused only to make room for critical ones."""

from __future__ import annotations

import math

import pytest

from serving.config import BATCH, CRITICAL, NORMAL
from serving.door import Door, refuse_batch


def rule(**overrides: float) -> bool:
    args = dict(now=10.0, inflight=0, loop_lag_s=0.0, last_critical=9.5, max_inflight=2,
                lag_s=0.01, horizon_s=1.0)  # fmt: skip
    args.update(overrides)
    return refuse_batch(**args)  # type: ignore[arg-type]


def test_without_critical_traffic_nothing_is_refused_at_the_door() -> None:
    assert not rule(last_critical=-math.inf, inflight=1000, loop_lag_s=5.0)
    assert not rule(last_critical=8.9, inflight=1000, loop_lag_s=5.0)  # critical 1.1 s ago


def test_with_critical_traffic_the_cap_and_the_loop_lag_refuse() -> None:
    assert not rule(inflight=1)
    assert rule(inflight=2)
    assert rule(inflight=0, loop_lag_s=0.01)
    assert not rule(inflight=0, loop_lag_s=0.009)


def test_zero_turns_either_condition_off() -> None:
    assert not rule(inflight=50, max_inflight=0)
    assert not rule(loop_lag_s=5.0, lag_s=0.0)


def test_the_door_counts_batch_requests_in_flight_and_its_refusals() -> None:
    door = Door(max_batch_inflight=2, lag_s=0.0)
    assert not door.refuse_batch(now=1.0, loop_lag_s=0.0)
    with door.admitted(BATCH), door.admitted(BATCH), door.admitted(CRITICAL):
        assert door.batch_inflight == 2
        assert not door.refuse_batch(now=1.0, loop_lag_s=0.0)  # no critical request yet
        door.critical(1.0)
        assert door.refuse_batch(now=1.5, loop_lag_s=0.0)
    assert door.batch_inflight == 0
    assert not door.refuse_batch(now=1.5, loop_lag_s=0.0)
    assert door.refused == 1


def test_a_failed_batch_request_leaves_the_count() -> None:
    door = Door(max_batch_inflight=1, lag_s=0.0)
    with pytest.raises(RuntimeError), door.admitted(BATCH):
        raise RuntimeError("the handler failed")
    with door.admitted(NORMAL):
        assert door.batch_inflight == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_inflight"):
        Door(max_batch_inflight=-1, lag_s=0.0)
