"""What a window counts, without torch: request outcomes, the latency histogram's edges, and
what its predictions cost.

The control plane reads windows (the controller, `mlcp deployments`) with these alone, so
it need not import torch to read them.
"""

from __future__ import annotations

# Fine enough that a p99 read off the histogram is within ~25-50% of the true one
# anywhere between 0.5 ms and 10 s (the controller compares p99s across versions).
LATENCY_EDGES_S = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04,
    0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip
OK, ERROR, REJECTED, CLIENT_ERROR = "ok", "error", "rejected", "client_error"
OUTCOMES = (OK, ERROR, REJECTED, CLIENT_ERROR)


def outcome_of(status: int) -> str:
    """The window outcome of an HTTP status: 503/504 are rejections, other 5xx errors."""
    if status < 400:
        return OK
    if status in (503, 504):
        return REJECTED
    return ERROR if status >= 500 else CLIENT_ERROR


def cost_per_1k(compute_s: float, predictions: int, price_per_device_hour: float) -> float | None:
    """What 1,000 predictions cost at ``price_per_device_hour`` (None: none were made)."""
    if predictions <= 0:
        return None
    return compute_s / predictions * 1000 * price_per_device_hour / 3600
