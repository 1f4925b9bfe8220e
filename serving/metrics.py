"""Prometheus metrics of the serving tier, per model and version, on a registry of its own.

    metrics = ServingMetrics()        # one per app; /metrics serves metrics.registry
    metrics.request("churn", "3", "infer", 200, 0.004)

Exposed: ``mlcp_serving_requests_total`` (labels model, version, endpoint, code),
``mlcp_serving_request_seconds`` (histogram: model, version, endpoint),
``mlcp_serving_queue_seconds`` and ``mlcp_serving_compute_seconds`` (histograms per version),
``mlcp_serving_batch_rows`` (histogram of rows per batch), ``mlcp_serving_queue_depth``
(gauge), ``mlcp_serving_shadow_total`` (shadow copies by outcome) and
``mlcp_serving_desired_revision`` (gauge: the desired-state revision applied, per model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    """The serving tier's Prometheus series; implements the batcher's `BatchMetrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "mlcp_serving_requests",
            "Requests answered, by model, version, endpoint and HTTP status.",
            ("model", "version", "endpoint", "code"),
            registry=r,
        )
        self.latency = Histogram(
            "mlcp_serving_request_seconds",
            "Time from a request's arrival to its answer.",
            ("model", "version", "endpoint"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "mlcp_serving_queue_seconds",
            "Time a request waited in its version's queue before its batch ran.",
            ("ref",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "mlcp_serving_compute_seconds",
            "Model compute time per batch.",
            ("ref",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "mlcp_serving_batch_rows",
            "Rows per computed batch.",
            ("ref",),
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.depth = Gauge(
            "mlcp_serving_queue_depth", "Requests waiting per version.", ("ref",), registry=r
        )
        self.shadow = Counter(
            "mlcp_serving_shadow",
            "Shadow copies by outcome (answered, failed, dropped).",
            ("ref", "outcome"),
            registry=r,
        )
        self.revision = Gauge(
            "mlcp_serving_desired_revision",
            "The desired-state revision this replica serves, per model.",
            ("model",),
            registry=r,
        )

    def request(self, model: str, version: str, endpoint: str, code: int, seconds: float) -> None:
        # Labelled children are looked up once per label set (labels() costs microseconds).
        key = (model, version, endpoint, code)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, version, endpoint, str(code)),
                self.latency.labels(model, version, endpoint),
            )
            self._children[key] = children
        children[0].inc()
        if code < 400:
            children[1].observe(seconds)

    def batch(self, ref: str, rows: int, queue_s: Sequence[float], compute_s: float) -> None:
        self.batch_rows.labels(ref).observe(rows)
        self.compute.labels(ref).observe(compute_s)
        queue = self.queue.labels(ref)
        for seconds in queue_s:
            queue.observe(seconds)

    def queue_depth(self, ref: str, depth: int) -> None:
        self.depth.labels(ref).set(depth)
