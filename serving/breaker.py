"""A circuit breaker: after a dependency fails, skip it for a while instead of waiting on it.

    breaker = Breaker(cooldown_s=5.0)      # clock injectable: Breaker(5.0, clock=fake)
    if breaker.allows():                   # closed, or the one trial call after the cooldown
        try:
            call()
        except OSError:
            breaker.failed()               # open: skipped for cooldown_s
        else:
            breaker.succeeded()            # closed

Closed, it lets every call through. Open, it lets none through until ``cooldown_s`` after
the last failure; then it lets exactly one trial call through (others are still skipped
while that one is out), which closes it again or reopens it for another cooldown. It does
no I/O and never sleeps: the decision is `allows_at`, a pure function of the state and now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, TRYING = "closed", "open", "trying"


@dataclass(frozen=True, slots=True)
class BreakerState:
    """Where a breaker stands: ``until`` is when an open breaker next lets a trial through
    (and when a trying one gives up on its trial and lets another through)."""

    mode: str = CLOSED
    until: float = 0.0


def allows_at(state: BreakerState, now: float, cooldown_s: float) -> tuple[bool, BreakerState]:
    """Whether a call may go through at ``now``, and the state after that decision."""
    if state.mode == CLOSED:
        return True, state
    if now < state.until:
        return False, state
    # The cooldown is over: one trial. Until it reports back (or another cooldown passes, so
    # a lost trial can't keep the breaker open for good) the others are still skipped.
    return True, BreakerState(TRYING, now + cooldown_s)


class Breaker:
    """Skips a dependency for ``cooldown_s`` after each failure (see the module docstring)."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not cooldown_s > 0:
            raise ValueError(f"Breaker.cooldown_s must be > 0, got {cooldown_s}")
        self.cooldown_s, self.clock = cooldown_s, clock
        self.state = BreakerState()

    @property
    def closed(self) -> bool:
        return self.state.mode == CLOSED

    def allows(self) -> bool:
        allowed, self.state = allows_at(self.state, self.clock(), self.cooldown_s)
        return allowed

    def failed(self) -> bool:
        """Open it for ``cooldown_s`` from now; True when it was closed (an outage began)."""
        began = self.state.mode == CLOSED
        self.state = BreakerState(OPEN, self.clock() + self.cooldown_s)
        return began

    def succeeded(self) -> bool:
        """Close it; True when it was not closed (an outage ended)."""
        ended = self.state.mode != CLOSED
        self.state = BreakerState()
        return ended
