"""How busy a replica is, as one number to scale on (``mlcp_serving_busy``).

    meter = BusyMeter(window_s=10, queue_budget_s=0.05)
    meter.batch(compute_s=0.004, waits_s=[0.001, 0.003], now=t)   # per computed batch
    meter.value(now=t, oldest_wait_s=0.0)                          # e.g. 0.42

``busy = max(utilisation, queue delay / queue budget)`` over the last ``window_s``:

- *utilisation* is the share of the window the device spent computing (batches of every
  version add up: they share it), so a replica whose model never stops is at 1.0;
- *queue delay* is the mean time requests waited for their batch, or the age of the oldest
  request still waiting if that is longer (a stalled model shows before any batch ends), or
  the event loop's lag (how late a timer fires: requests wait that long before they are
  even read, when HTTP is the bottleneck rather than the model), against ``queue_budget_s``,
  the wait that still leaves room in a request's deadline.

Below 1 the replica keeps up; at 1 it is saturated one way or the other. Target **0.7** in a
HorizontalPodAutoscaler or KEDA (docs/serving.md): scale-out starts while there is headroom
for the minute a new replica takes to load and warm its models. The arithmetic is `busy`, a
pure function; the meter keeps per-second sums, so memory is bounded by ``window_s``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

TARGET = 0.7  # what an autoscaler should hold a replica at (see the module docstring)


def busy(
    compute_s: float,
    window_s: float,
    wait_sum_s: float,
    waits: int,
    queue_budget_s: float,
    oldest_wait_s: float = 0.0,
    loop_lag_s: float = 0.0,
) -> float:
    """The busy value of a window with ``compute_s`` of device time and ``waits`` requests
    that waited ``wait_sum_s`` in all (plus one still waiting for ``oldest_wait_s``), on an
    event loop running ``loop_lag_s`` late."""
    utilisation = compute_s / window_s if window_s > 0 else 0.0
    mean_wait = wait_sum_s / waits if waits else 0.0
    delay = max(mean_wait, oldest_wait_s, loop_lag_s)
    return max(utilisation, delay / queue_budget_s)


class BusyMeter:
    """Per-second sums of compute time and queue waits over the last ``window_s`` seconds.
    Called on the event loop only (batches are observed there, and /metrics reads there)."""

    def __init__(self, window_s: float = 10.0, queue_budget_s: float = 0.05) -> None:
        if not window_s > 0 or not queue_budget_s > 0:
            raise ValueError("BusyMeter needs window_s > 0 and queue_budget_s > 0")
        self.window_s, self.queue_budget_s = window_s, queue_budget_s
        self._seconds: deque[list[float]] = deque()  # [second, compute_s, wait_sum_s, waits]
        self.loop_lag_s = 0.0  # smoothed over about a second (see `lag`)

    def lag(self, seconds: float) -> None:
        """One sample of the event loop's lag (taken every 0.1 s): a moving average that
        follows a change within about a second, so shedding reacts fast and settles."""
        self.loop_lag_s += 0.2 * (max(0.0, seconds) - self.loop_lag_s)

    def batch(self, compute_s: float, waits_s: Sequence[float], now: float) -> None:
        """One computed batch that ended at ``now``."""
        second = math.floor(now)
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append([second, 0.0, 0.0, 0.0])
            self._trim(now)
        bucket = self._seconds[-1]
        bucket[1] += compute_s
        bucket[2] += sum(waits_s)
        bucket[3] += len(waits_s)

    def value(self, now: float, oldest_wait_s: float = 0.0) -> float:
        self._trim(now)
        compute = sum(b[1] for b in self._seconds)
        wait_sum = sum(b[2] for b in self._seconds)
        waits = int(sum(b[3] for b in self._seconds))
        return busy(
            compute, self.window_s, wait_sum, waits, self.queue_budget_s, oldest_wait_s,
            self.loop_lag_s,
        )  # fmt: skip

    def _trim(self, now: float) -> None:
        oldest = math.floor(now - self.window_s)
        while self._seconds and self._seconds[0][0] <= oldest:
            self._seconds.popleft()
