"""The door: which batch-class requests are refused before their body is read.

    door = Door(max_batch_inflight=2, lag_s=0.010, horizon_s=1.0)
    door.critical(now)                      # a critical-class request arrived
    door.refuse_batch(now, loop_lag_s)    # True: answer this batch-class request 503
    with door.admitted(priority): ...     # counts the batch-class requests in flight

Every request is read, parsed, looked up and answered by the same event loop and thread
pools, in arrival order, whatever its class: the batcher puts critical rows first, but only
once they reach it. Under a flood of batch-class requests a critical one waits behind the
flood everywhere before that. The one remedy a replica has is not to take the flood in:
while a critical request arrived in the last ``horizon_s``, batch-class requests get 503
with Retry-After at the door when ``max_batch_inflight`` of them are already in flight, or
when the event loop runs ``lag_s`` or more late (HTTP itself saturated). Without critical
traffic nothing is refused here: normal requests (the default class) still go before batch
ones in the batcher, whose queue limits still apply, and batch clients get what the
replica has to spare. The decision, `refuse_batch`, is a pure function of counts and times.
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
    last_critical: float,
    max_inflight: int,
    lag_s: float,
    horizon_s: float,
) -> bool:
    """Refuse a batch-class request at ``now`` with ``inflight`` batch-class requests
    already in flight: only while a critical request came within ``horizon_s``, and then
    when the in-flight cap is reached or the loop runs ``lag_s`` late (0 turns either off)."""
    if now - last_critical > horizon_s:
        return False
    return 0 < max_inflight <= inflight or 0 < lag_s <= loop_lag_s


class Door:
    """Batch-class requests in flight, the last critical request's time, and the rule."""

    __slots__ = ("batch_inflight", "horizon_s", "lag_s", "last_critical", "max_batch_inflight",
                 "refused")  # fmt: skip

    def __init__(self, max_batch_inflight: int, lag_s: float, horizon_s: float = 1.0) -> None:
        if max_batch_inflight < 0 or not lag_s >= 0 or not horizon_s > 0:
            raise ValueError("Door needs max_batch_inflight >= 0, lag_s >= 0, horizon_s > 0")
        self.max_batch_inflight, self.lag_s, self.horizon_s = max_batch_inflight, lag_s, horizon_s
        self.last_critical = -math.inf
        self.batch_inflight = 0
        self.refused = 0

    def critical(self, now: float) -> None:
        self.last_critical = now

    def refuse_batch(self, now: float, loop_lag_s: float) -> bool:
        refuse = refuse_batch(
            now, self.batch_inflight, loop_lag_s, self.last_critical,
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
