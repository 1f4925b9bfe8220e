"""The circuit breaker, on an injected clock: no Redis, no sleeps."""

from __future__ import annotations

import pytest

from serving.breaker import CLOSED, Breaker, BreakerState, allows_at


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_closed_breaker_lets_every_call_through() -> None:
    breaker = Breaker(5.0, Clock())
    assert all(breaker.allows() for _ in range(3))
    assert breaker.closed


def test_after_a_failure_calls_are_skipped_for_the_cooldown() -> None:
    clock = Clock()
    breaker = Breaker(5.0, clock)
    assert breaker.failed() is True  # an outage began
    assert not breaker.allows()
    clock.now += 4.9
    assert not breaker.allows()


def test_after_the_cooldown_exactly_one_trial_goes_through() -> None:
    clock = Clock()
    breaker = Breaker(5.0, clock)
    breaker.failed()
    clock.now += 5.0
    assert breaker.allows()  # the trial
    assert not breaker.allows()  # the others wait for its outcome
    assert breaker.succeeded() is True  # the outage ended
    assert breaker.allows()
    assert breaker.closed


def test_a_failed_trial_opens_it_for_another_cooldown_without_a_new_outage() -> None:
    clock = Clock()
    breaker = Breaker(5.0, clock)
    breaker.failed()
    clock.now += 5.0
    assert breaker.allows()
    assert breaker.failed() is False  # the same outage goes on
    clock.now += 4.0
    assert not breaker.allows()
    clock.now += 1.0
    assert breaker.allows()


def test_a_trial_that_never_reports_back_does_not_keep_it_open_for_good() -> None:
    clock = Clock()
    breaker = Breaker(5.0, clock)
    breaker.failed()
    clock.now += 5.0
    assert breaker.allows()  # its answer is lost (a cancelled request)
    clock.now += 5.0
    assert breaker.allows()


def test_success_on_a_closed_breaker_is_no_news() -> None:
    breaker = Breaker(5.0, Clock())
    assert breaker.succeeded() is False


def test_the_decision_is_a_pure_function_of_state_and_now() -> None:
    state = BreakerState()
    assert allows_at(state, 0.0, 5.0) == (True, state)
    opened = BreakerState("open", 10.0)
    assert allows_at(opened, 9.0, 5.0) == (False, opened)
    allowed, trying = allows_at(opened, 10.0, 5.0)
    assert allowed
    assert trying == BreakerState("trying", 15.0)
    assert trying.mode != CLOSED


def test_a_cooldown_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cooldown_s must be > 0"):
        Breaker(0.0)
