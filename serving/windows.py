"""Per-version report windows for the rollback controller.

Each replica cuts, every ``window_s``, one `Window` per served version: request and error
counts, a latency histogram, and sketches of the features it was given and the predictions
it made. A feature's histogram reuses the bin edges of the version's training reference
(``ModelSpec.reference``), so the controller can compute PSI / KS / Jensen-Shannon against
it without the raw values; the prediction sketch reuses the prediction reference's edges.

    recorder = WindowRecorder(spec, role="champion", replica="host:42")
    recorder.record_batch(inputs, outputs)      # compute thread: keeps references, O(1)
    recorder.record(OK, 0.004)                  # event loop: one call per request, any outcome
    recorder.record_compute(0.003, rows=32)     # compute thread: a batch's device-seconds
    recorder.record_cached(rows=2)              # event loop: answers the cache gave
    window = recorder.cut(now)                  # a Window; the recorder starts a new one

Every request a replica answers counts in exactly one outcome of the version that took it:
``ok``, ``error`` (5xx: the model or the server failed), ``rejected`` (503 overload or
draining, 504 deadline: turned away without an answer) or ``client_error`` (4xx: the
request was wrong). The latency histogram holds every request but client errors.

Cost: ``compute_s`` sums the device-seconds of the batches the version ran in the window
and ``answered`` counts the rows it answered (computed or from its cache), so
``compute_s / answered`` is what a prediction costs in device time (`cost_per_1k`).

The hot path only keeps the batch tensors; the sketches are computed when the window is cut
(off the event loop), over at most ``max_rows`` rows: past that, one batch in two, then one
in four... is kept, so memory stays bounded and the sample stays spread over the window.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from serving.spec import ModelSpec

from serving.outcomes import (  # noqa: F401  (re-exported: the window's vocabulary)
    CLIENT_ERROR,
    ERROR,
    LATENCY_EDGES_S,
    OK,
    OUTCOMES,
    REJECTED,
    cost_per_1k,
    outcome_of,
)

# For a version without a prediction reference (registered without training rows, never
# evaluated): ten bins over [0, 1] suit probabilities, and the moments describe any output.
PREDICTION_EDGES = tuple(i / 10 for i in range(11))


@dataclass(frozen=True)
class Sketch:
    """A numeric column summarized: moments and counts over fixed bin edges (values outside
    the edges count in the end bins; NaN counts as null)."""

    count: int
    nulls: int
    total: float
    total_sq: float
    minimum: float | None
    maximum: float | None
    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "edges": list(self.edges), "counts": list(self.counts)}


@dataclass(frozen=True)
class Window:
    """What one replica saw of one version between ``started_at`` and ``ended_at``."""

    replica: str
    model: str
    version: int
    role: str
    started_at: datetime
    ended_at: datetime
    requests: int  # every request, whatever its outcome
    errors: int  # requests the version failed to answer (server faults, not bad input)
    rejected: int  # turned away without computing: queue full (503) or deadline (504)
    latency_sum_s: float
    latency_counts: tuple[int, ...]  # len(LATENCY_EDGES_S) + 1: the last bin is > 10 s
    features: Mapping[str, Sketch] = field(default_factory=dict)
    predictions: Sketch | None = None
    latency_edges_s: tuple[float, ...] = LATENCY_EDGES_S
    client_errors: int = 0  # 4xx: the request was wrong, not the version
    compute_s: float = 0.0  # device-seconds of the batches it ran
    answered: int = 0  # rows (predictions) answered: computed, or from its prediction cache
    cached: int = 0  # of which from the cache

    @property
    def ok(self) -> int:
        return self.requests - self.errors - self.rejected - self.client_errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "model": self.model,
            "version": self.version,
            "role": self.role,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "client_errors": self.client_errors,
            "compute_s": self.compute_s,
            "answered": self.answered,
            "cached": self.cached,
            "latency_sum_s": self.latency_sum_s,
            "latency_edges_s": list(self.latency_edges_s),
            "latency_counts": list(self.latency_counts),
            "features": {name: s.to_dict() for name, s in self.features.items()},
            "predictions": self.predictions.to_dict() if self.predictions else None,
        }


class _Column:
    """Running sketch of one column; updated a batch at a time with tensor ops."""

    __slots__ = ("count", "edges", "hist", "maximum", "minimum", "nulls", "total", "total_sq")

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = torch.tensor(list(edges), dtype=torch.float64) if len(edges) > 1 else None
        bins = len(edges) - 1 if self.edges is not None else 0
        self.hist = torch.zeros(bins, dtype=torch.int64)
        self.count = self.nulls = 0
        self.total = self.total_sq = 0.0
        self.minimum = self.maximum = math.nan

    def add(self, values: torch.Tensor) -> None:
        values = values.to(torch.float64)
        finite = values[~torch.isnan(values)]
        self.nulls += int(values.numel() - finite.numel())
        if finite.numel() == 0:
            return
        self.count += int(finite.numel())
        self.total += float(finite.sum())
        self.total_sq += float((finite * finite).sum())
        lo, hi = float(finite.min()), float(finite.max())
        self.minimum = lo if math.isnan(self.minimum) else min(self.minimum, lo)
        self.maximum = hi if math.isnan(self.maximum) else max(self.maximum, hi)
        if self.edges is not None:
            # Inner edges only: below the first bin counts in bin 0, above the last in the last.
            index = torch.bucketize(finite, self.edges[1:-1], right=True)
            self.hist += torch.bincount(index, minlength=self.hist.numel())

    def sketch(self) -> Sketch:
        return Sketch(
            count=self.count,
            nulls=self.nulls,
            total=self.total,
            total_sq=self.total_sq,
            minimum=None if math.isnan(self.minimum) else self.minimum,
            maximum=None if math.isnan(self.maximum) else self.maximum,
            edges=tuple(float(e) for e in self.edges) if self.edges is not None else (),
            counts=tuple(int(c) for c in self.hist),
        )


def prediction_edges(spec: ModelSpec) -> tuple[float, ...]:
    """The prediction reference's bin edges (its deciles), else `PREDICTION_EDGES`."""
    output = (spec.prediction_reference or {}).get("output") or {}
    edges = tuple(float(e) for e in (output.get("histogram") or {}).get("edges", ()))
    return edges if len(edges) > 1 else PREDICTION_EDGES


def feature_edges(spec: ModelSpec) -> list[tuple[str, tuple[float, ...]]]:
    """(name, bin edges) per input column: the reference's edges where it has them."""
    reference = (spec.reference or {}).get("features", {})
    width = spec.inputs[0].shape[-1] if spec.inputs and spec.inputs[0].shape else 0
    names = list(spec.feature_names) or [f"input_{i}" for i in range(max(width, 0))]
    out = []
    for name in names:
        histogram = reference.get(name, {}).get("histogram") or {}
        out.append((name, tuple(float(e) for e in histogram.get("edges", ()))))
    return out


class WindowRecorder:
    """Accumulates one version's current window; thread-safe, O(1) per batch and request."""

    def __init__(
        self,
        spec: ModelSpec,
        role: str,
        replica: str,
        started_at: datetime,
        max_rows: int = 100_000,
    ) -> None:
        self.spec, self.role, self.replica = spec, role, replica
        self.max_rows = max_rows
        self._edges = feature_edges(spec)
        self._prediction_edges = prediction_edges(spec)
        self._lock = threading.Lock()
        self._reset(started_at)

    def _reset(self, started_at: datetime) -> None:
        self._started_at = started_at
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._latency_sum = 0.0
        self._latency = [0] * (len(LATENCY_EDGES_S) + 1)
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._compute_s = 0.0
        self._computed = self._cached = 0
        self._kept_rows = 0
        self._stride = 1  # keep one batch in `stride`
        self._seen = 0

    def record(self, outcome: str, latency_s: float) -> None:
        """One request and its outcome (one of ``OUTCOMES``; see `outcome_of`)."""
        timed = outcome != CLIENT_ERROR
        index = _bin(latency_s) if timed else 0
        with self._lock:
            self._counts[outcome] += 1
            if timed:
                self._latency_sum += latency_s
                self._latency[index] += 1

    def record_compute(self, seconds: float, rows: int) -> None:
        """A batch of ``rows`` took ``seconds`` of the device."""
        with self._lock:
            self._compute_s += seconds
            self._computed += rows

    def record_cached(self, rows: int) -> None:
        """``rows`` answered from the version's prediction cache (no device time)."""
        with self._lock:
            self._cached += rows

    def record_batch(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        """Sketch a computed batch: ``inputs`` (rows, features) and the model's outputs."""
        if inputs.ndim != 2 or outputs.ndim < 1 or outputs.shape[0] != inputs.shape[0]:
            return
        with self._lock:
            self._seen += 1
            if self._seen % self._stride:
                return
            self._batches.append((inputs, outputs))
            self._kept_rows += inputs.shape[0]
            if self._kept_rows > self.max_rows:  # halve the sample, keep the spread
                self._batches = self._batches[::2]
                self._kept_rows = sum(b[0].shape[0] for b in self._batches)
                self._stride *= 2

    def cut(self, now: datetime) -> Window:
        """The window so far, ended at ``now``; a new one starts. Call it off the event loop:
        it computes the sketches."""
        with self._lock:
            batches = self._batches
            counts, latency_sum = self._counts, self._latency_sum
            latency, started_at = tuple(self._latency), self._started_at
            compute_s, computed, cached = self._compute_s, self._computed, self._cached
            self._reset(now)
        features = {name: _Column(edges) for name, edges in self._edges}
        predictions = _Column(self._prediction_edges)
        if batches:
            inputs = torch.cat([b[0] for b in batches]).to("cpu", torch.float64)
            outputs = torch.cat([b[1].reshape(b[1].shape[0], -1)[:, :1] for b in batches])
            for column, values in zip(features.values(), inputs.T, strict=False):
                column.add(values)
            predictions.add(outputs[:, 0].to("cpu", torch.float64))
        return Window(
            replica=self.replica,
            model=self.spec.name,
            version=self.spec.version,
            role=self.role,
            started_at=started_at,
            ended_at=now,
            requests=sum(counts.values()),
            errors=counts[ERROR],
            rejected=counts[REJECTED],
            client_errors=counts[CLIENT_ERROR],
            latency_sum_s=latency_sum,
            latency_counts=latency,
            compute_s=compute_s,
            answered=computed + cached,
            cached=cached,
            features={name: column.sketch() for name, column in features.items()},
            predictions=predictions.sketch(),
        )


def _bin(latency_s: float) -> int:
    return bisect.bisect_left(LATENCY_EDGES_S, latency_s)
