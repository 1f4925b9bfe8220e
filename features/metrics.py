"""Prometheus metrics of the cached feature client.

    metrics = FeatureMetrics()                          # the default registry (one per process)
    metrics = FeatureMetrics(CollectorRegistry())       # tests: a registry of their own
    FeatureClient(backend, generations, metrics=metrics)

Exposed (``service`` is ``name@version``):
- ``mlcp_feature_cache_hits_total``, ``..._misses_total`` (rows not fresh: fetched or awaited),
  ``..._coalesced_total`` (missed rows that awaited another thread's fetch),
  ``..._stale_served_total`` (rows served past their TTL while the store was down),
  ``..._invalidations_total`` (a view's generation moved), ``..._evictions_total``,
  ``mlcp_feature_backend_errors_total`` (failed store reads), ``mlcp_feature_cache_entries``;
- histograms ``mlcp_feature_get_seconds`` (label ``outcome``: ``hit`` every row from the cache,
  ``fetched`` some read from the store, ``stale`` stale rows served, ``error`` raised),
  ``mlcp_feature_backend_fetch_seconds``, and ``mlcp_feature_served_age_seconds`` (the oldest
  row of each get).

A hit costs a microsecond or two, so the client's tallies are plain numbers updated under one
lock and turned into Prometheus samples when the registry is scraped (a custom collector),
not ``Counter``/``Histogram`` objects that each take their own lock per call.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

LATENCY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
AGE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
OUTCOMES = ("hit", "fetched", "stale", "error")
COUNTERS = {
    "hits": ("mlcp_feature_cache_hits", "Rows served fresh from the cache."),
    "misses": (
        "mlcp_feature_cache_misses",
        "Rows not fresh in the cache: read from the online store, or awaited.",
    ),
    "coalesced": (
        "mlcp_feature_cache_coalesced",
        "Missed rows that awaited another thread's read of the same key.",
    ),
    "stale_served": (
        "mlcp_feature_cache_stale_served",
        "Rows served past their TTL because the online store was unavailable.",
    ),
    "backend_errors": ("mlcp_feature_backend_errors", "Failed online store reads."),
    "invalidations": (
        "mlcp_feature_cache_invalidations",
        "Times a service's cached rows stopped being served (a view's generation moved).",
    ),
}


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class _ServiceStats:
    """One service's tallies."""

    __slots__ = (*COUNTERS, "age", "fetch", "get")

    def __init__(self) -> None:
        self.hits = self.misses = self.coalesced = self.stale_served = 0
        self.backend_errors = self.invalidations = 0
        self.get = {outcome: _Histogram(LATENCY_BUCKETS) for outcome in OUTCOMES}
        self.fetch = _Histogram(LATENCY_BUCKETS)
        self.age = _Histogram(AGE_BUCKETS)


class FeatureMetrics:
    """The feature client's counters and histograms, registered as one Prometheus collector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, _ServiceStats] = {}
        self._evictions = 0
        self._entries = 0
        (REGISTRY if registry is None else registry).register(self)

    def _stats(self, service: str) -> _ServiceStats:
        stats = self._services.get(service)
        if stats is None:
            stats = self._services.setdefault(service, _ServiceStats())
        return stats

    # -- recording (the client calls these) ------------------------------------------------------
    def observe_get(
        self,
        service: str,
        outcome: str,
        seconds: float,
        hits: int = 0,
        misses: int = 0,
        stale: int = 0,
        oldest_age_s: float | None = None,
    ) -> None:
        """One get(): its outcome (hit, fetched, stale, error), latency, and rows by kind."""
        stats = self._services.get(service) or self._stats(service)
        with self._lock:
            stats.get[outcome].observe(seconds)
            stats.hits += hits
            stats.misses += misses
            stats.stale_served += stale
            if oldest_age_s is not None:
                stats.age.observe(oldest_age_s)

    def observe_coalesced(self, service: str, rows: int) -> None:
        stats = self._stats(service)
        with self._lock:
            stats.coalesced += rows

    def observe_fetch(self, service: str, seconds: float, *, ok: bool = True) -> None:
        stats = self._stats(service)
        with self._lock:
            if ok:
                stats.fetch.observe(seconds)
            else:
                stats.backend_errors += 1

    def observe_invalidation(self, service: str) -> None:
        stats = self._stats(service)
        with self._lock:
            stats.invalidations += 1

    def observe_size(self, entries: int, evicted: int = 0) -> None:
        with self._lock:
            self._entries = entries
            self._evictions += evicted

    # -- the Prometheus collector ----------------------------------------------------------------
    def describe(self) -> list[Metric]:
        return list(self.collect())  # the names, so a second FeatureMetrics in a registry fails

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            services = sorted(self._services.items())
            counts = {
                name: [(service, getattr(stats, name)) for service, stats in services]
                for name in COUNTERS
            }
            gets = [
                (service, outcome, histogram.buckets(), histogram.total)
                for service, stats in services
                for outcome, histogram in stats.get.items()
                if histogram.counts != [0] * len(histogram.counts)
            ]
            fetches = [(s, st.fetch.buckets(), st.fetch.total) for s, st in services]
            ages = [(s, st.age.buckets(), st.age.total) for s, st in services]
            evictions, entries = self._evictions, self._entries
        for name, (metric, text) in COUNTERS.items():
            family = CounterMetricFamily(metric, text, labels=["service"])
            for service, value in counts[name]:
                family.add_metric([service], value)
            yield family
        family = CounterMetricFamily(
            "mlcp_feature_cache_evictions", "Entries evicted to stay within max_entries."
        )
        family.add_metric([], evictions)
        yield family
        yield GaugeMetricFamily("mlcp_feature_cache_entries", "Entries cached.", value=entries)
        latency = HistogramMetricFamily(
            "mlcp_feature_get_seconds",
            "FeatureClient.get() latency.",
            labels=["service", "outcome"],
        )
        for service, outcome, buckets, total in gets:
            latency.add_metric([service, outcome], buckets, total)
        yield latency
        for metric, text, histograms in (
            (
                "mlcp_feature_backend_fetch_seconds",
                "Online store read latency (one read per get() with misses).",
                fetches,
            ),
            ("mlcp_feature_served_age_seconds", "Age of the oldest row each get() served.", ages),
        ):
            family_h = HistogramMetricFamily(metric, text, labels=["service"])
            for service, buckets, total in histograms:
                family_h.add_metric([service], buckets, total)
            yield family_h
