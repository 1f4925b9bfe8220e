"""The door: which batch-class requests are refused before their body is read.

    door = Door(max_batch_inflight=4, lag_s=0.010, horizon_s=1.0)
    door.urgent(now)                      # a critical- or normal-class request arrived
    door.refuse_batch(now, loop_lag_s)    # True: answer this batch-class request 503
    with door.admitted(priority): ...     # counts the batch-class requests in flight

Every request is read, parsed, looked up and answered by the same event loop and thread
pools, in arrival order, whatever its class: the batcher puts critical rows first, but only
once they reach it. Under a flood of batch-class requests a critical one waits behind the
flood everywhere before that. The one remedy a replica has is not to take the flood in:
while a more urgent request arrived in the last ``horizon_s``, batch-class requests get 503
with Retry-After at the door when ``max_batch_inflight`` of them are already in flight, or
when the event loop runs ``lag_s`` or more late (HTTP itself saturated). Batch traffic alone
is never refused here (there is nobody to make room for; the batcher's queue limits still
apply). The decision, `refuse_batch`, is a pure function of counts and times.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from serving.config import BATCH


def refuse_batch(
    now: float,
    inflight: int,
    loop_lag_s: float,
    last_urgent: float,
    max_inflight: int,
    lag_s: float,
    horizon_s: float,
) -> bool:
    """Refuse a batch-class request at ``now`` with ``inflight`` batch-class requests
    already in flight: only while a more urgent request came within ``horizon_s``, and then
    when the in-flight cap is reached or the loop runs ``lag_s`` late (0 turns either off)."""
    if now - last_urgent > horizon_s:
        return False
    return 0 < max_inflight <= inflight or 0 < lag_s <= loop_lag_s


class Door:
    """Batch-class requests in flight, the last urgent request's time, and the rule."""

    __slots__ = ("batch_inflight", "horizon_s", "lag_s", "last_urgent", "max_batch_inflight",
                 "refused")  # fmt: skip

    def __init__(self, max_batch_inflight: int, lag_s: float, horizon_s: float = 1.0) -> None:
        if max_batch_inflight < 0 or not lag_s >= 0 or not horizon_s > 0:
            raise ValueError("Door needs max_batch_inflight >= 0, lag_s >= 0, horizon_s > 0")
        self.max_batch_inflight, self.lag_s, self.horizon_s = max_batch_inflight, lag_s, horizon_s
        self.last_urgent = -math.inf
        self.batch_inflight = 0
        self.refused = 0

    def urgent(self, now: float) -> None:
        self.last_urgent = now

    def refuse_batch(self, now: float, loop_lag_s: float) -> bool:
        refuse = refuse_batch(
            now, self.batch_inflight, loop_lag_s, self.last_urgent,
            self.max_batch_inflight, self.lag_s, self.horizon_s,
        )  # fmt: skip
        self.refused += refuse
        return refuse

    @contextlib.contextmanager
    def admitted(self, priority: int) -> Iterator[None]:
        """Count a batch-class request in flight while the block runs."""
        if priority != BATCH:
            yield
            return
        self.batch_inflight += 1
        try:
            yield
        finally:
            self.batch_inflight -= 1
