"""Prometheus metrics of the serving tier, per model and version, on a registry of its own.

    metrics = ServingMetrics()        # one per app; /metrics serves metrics.registry
    metrics.request("churn", "3", "infer", 200, 0.004)

Exposed: ``mlcp_serving_requests_total`` (labels model, version, endpoint, code),
``mlcp_serving_request_seconds`` (histogram: model, version, endpoint),
``mlcp_serving_queue_seconds`` and ``mlcp_serving_compute_seconds`` (histograms per version),
``mlcp_serving_batch_rows`` (histogram of rows per batch), ``mlcp_serving_queue_depth``
(gauge), ``mlcp_serving_shadow_total`` (shadow copies by outcome),
``mlcp_serving_stale_answers_total`` (entity answers computed from features served past their
freshness, per version) and
``mlcp_serving_desired_revision`` (gauge: the desired-state revision applied, per model),
``mlcp_serving_windows_pending`` (report windows waiting for the database),
``mlcp_serving_windows_dropped_total`` (windows lost because that backlog was full), and the
prediction cache's ``mlcp_serving_cache_lookups_total`` (per version, outcome hit or miss),
``mlcp_serving_cache_evictions_total`` and ``mlcp_serving_cache_entries``; its shared tier's
``mlcp_serving_shared_cache_lookups_total`` (per version, outcome hit, miss, error or
skipped: one per local miss) and ``mlcp_serving_shared_cache_errors_total`` (op get or set);
cost:
``mlcp_serving_device_seconds_total`` and ``mlcp_serving_predictions_total`` per version and,
with a price per device-hour (`mlcp serve --device-hour-price`),
``mlcp_serving_cost_per_1k_predictions`` (since the version loaded); and
``mlcp_serving_busy``, the replica's one number to scale on (`serving.busy`; target 0.7).

Labels name only what is served: a request for a model or version this replica does not
serve counts under ``model="_other"`` / ``version="_other"``, so a client can't grow the
series set; a version's series are removed when it drains (`ServingMetrics.forget`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.busy import BusyMeter
from serving.outcomes import cost_per_1k

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
OTHER = "_other"  # the label of every model or version that is not served here
SHADOW_OUTCOMES = ("answered", "failed", "dropped", "cached")
CACHE_OUTCOMES = ("hit", "miss")
SHARED_CACHE_OUTCOMES = ("hit", "miss", "error", "skipped")


class ServingMetrics:
    """The serving tier's Prometheus series; implements the batcher's `BatchMetrics`."""

    def __init__(
        self, registry: CollectorRegistry | None = None, device_hour_price: float = 0.0
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.device_hour_price = device_hour_price
        self._spent: dict[str, list[float]] = {}  # ref -> [device-seconds, predictions]
        self.busy_meter = BusyMeter()
        # The age of the oldest request still queued on this replica (the manager's).
        self.oldest_wait: Callable[[], float] = lambda: 0.0
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
        self.stale = Counter(
            "mlcp_serving_stale_answers",
            "Entity answers computed from features served past their freshness (store down).",
            ("ref",),
            registry=r,
        )
        self.revision = Gauge(
            "mlcp_serving_desired_revision",
            "The desired-state revision this replica serves, per model.",
            ("model",),
            registry=r,
        )
        self.windows_pending = Gauge(
            "mlcp_serving_windows_pending",
            "Report windows kept while the control-plane database can't take them.",
            registry=r,
        )
        self.windows_dropped = Counter(
            "mlcp_serving_windows_dropped",
            "Report windows dropped because the backlog was full (the database was away long).",
            registry=r,
        )

        self.cache = Counter(
            "mlcp_serving_cache_lookups",
            "Prediction cache lookups per version (one per entity or /v2 request), by outcome.",
            ("ref", "outcome"),
            registry=r,
        )
        self.cache_evictions = Counter(
            "mlcp_serving_cache_evictions",
            "Answers dropped from a version's prediction cache to stay within max_entries.",
            ("ref",),
            registry=r,
        )
        self.cache_entries = Gauge(
            "mlcp_serving_cache_entries",
            "Answers in a version's prediction cache.",
            ("ref",),
            registry=r,
        )

        self.shared_cache = Counter(
            "mlcp_serving_shared_cache_lookups",
            "Shared (Redis) prediction cache lookups per version, one per local miss, by "
            "outcome: hit, miss, error (Redis failed) or skipped (Redis failed recently).",
            ("ref", "outcome"),
            registry=r,
        )
        self.shared_cache_errors = Counter(
            "mlcp_serving_shared_cache_errors",
            "Shared prediction cache calls to Redis that failed or timed out, by op (get, set).",
            ("op",),
            registry=r,
        )

        self.device_seconds = Counter(
            "mlcp_serving_device_seconds",
            "Device time spent computing a version's batches.",
            ("ref",),
            registry=r,
        )
        self.predictions = Counter(
            "mlcp_serving_predictions",
            "Rows a version answered: computed, or from its prediction cache.",
            ("ref",),
            registry=r,
        )
        self.cost = Gauge(
            "mlcp_serving_cost_per_1k_predictions",
            "What 1,000 of a version's predictions cost at the configured price per "
            "device-hour, since it loaded.",
            ("ref",),
            registry=r,
        )

        self.busy = Gauge(
            "mlcp_serving_busy",
            "How busy this replica is: max(device utilisation, queue delay / queue budget) "
            "over the last busy window. 1 is saturated; autoscale on a target of 0.7.",
            registry=r,
        )
        self.busy.set_function(self.busy_now)

    def busy_now(self) -> float:
        return self.busy_meter.value(time.monotonic(), self.oldest_wait())

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

    def forget(self, model: str, version: int) -> None:
        """Remove a drained version's series, so /metrics lists only what is served."""
        ref, label = f"{model}@{version}", str(version)
        for key in [k for k in self._children if k[:2] == (model, label)]:
            del self._children[key]
            _remove(self.requests, model, label, key[2], str(key[3]))
            _remove(self.latency, model, label, key[2])
        for metric in (
            self.queue, self.compute, self.batch_rows, self.depth, self.stale,
            self.cache_evictions, self.cache_entries, self.device_seconds, self.predictions,
            self.cost,
        ):  # fmt: skip
            _remove(metric, ref)
        for outcome in SHADOW_OUTCOMES:
            _remove(self.shadow, ref, outcome)
        for outcome in CACHE_OUTCOMES:
            _remove(self.cache, ref, outcome)
        for outcome in SHARED_CACHE_OUTCOMES:
            _remove(self.shared_cache, ref, outcome)
        self._spent.pop(ref, None)

    def batch(self, ref: str, rows: int, queue_s: Sequence[float], compute_s: float) -> None:
        self.batch_rows.labels(ref).observe(rows)
        self.compute.labels(ref).observe(compute_s)
        self.busy_meter.batch(compute_s, queue_s, time.monotonic())
        queue = self.queue.labels(ref)
        for seconds in queue_s:
            queue.observe(seconds)

    def stale_answer(self, ref: str) -> None:
        self.stale.labels(ref).inc()

    def queue_depth(self, ref: str, depth: int) -> None:
        self.depth.labels(ref).set(depth)

    def computed(self, ref: str, seconds: float, rows: int) -> None:
        if seconds:
            self.device_seconds.labels(ref).inc(seconds)
        self.predictions.labels(ref).inc(rows)
        spent = self._spent.setdefault(ref, [0.0, 0.0])
        spent[0] += seconds
        spent[1] += rows
        if self.device_hour_price > 0:
            cost = cost_per_1k(spent[0], int(spent[1]), self.device_hour_price)
            if cost is not None:
                self.cost.labels(ref).set(cost)

    def cache_lookups(self, ref: str, hits: int, misses: int) -> None:
        if hits:
            self.cache.labels(ref, "hit").inc(hits)
        if misses:
            self.cache.labels(ref, "miss").inc(misses)

    def shared_cache_lookups(self, ref: str, outcome: str, count: int) -> None:
        self.shared_cache.labels(ref, outcome).inc(count)

    def shared_cache_error(self, op: str) -> None:
        self.shared_cache_errors.labels(op).inc()

    def cache_stored(self, ref: str, entries: int, evicted: int) -> None:
        self.cache_entries.labels(ref).set(entries)
        if evicted:
            self.cache_evictions.labels(ref).inc(evicted)


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError), warnings.catch_warnings():  # KeyError: never observed
        # Importing feast sets PROMETHEUS_MULTIPROC_DIR in the process's environment, and
        # prometheus-client then warns on every removal; this registry is not multi-process.
        warnings.filterwarnings("ignore", message="Removal of labels has not been implemented")
        metric.remove(*labels)
