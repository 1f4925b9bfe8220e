"""One version's traffic over an analysis: its replicas' windows merged.

    traffic = Traffic.merge([window_dict, ...])   # bodies of mlcp_serving_windows rows
    traffic.served, traffic.failed                # requests judged, and those failed
    traffic.p99_s()                               # from the merged latency histogram
    traffic.slower_than(0.05)                     # requests certainly slower than 50 ms
    traffic.sketches.features["tenure_months"]    # merged feature bins (drift)

Counts add up exactly across replicas; latency histograms add up bin by bin when their
edges agree (windows cut with other edges count, but not in the histogram).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.controller.sketches import Sketches
from serving.outcomes import LATENCY_EDGES_S


@dataclass(frozen=True)
class Traffic:
    """Merged counts and latency histogram of one version over one or more windows."""

    requests: int = 0
    errors: int = 0
    rejected: int = 0
    client_errors: int = 0
    compute_s: float = 0.0  # device-seconds of its batches
    answered: int = 0  # predictions answered (computed or cached)
    latency_edges_s: tuple[float, ...] = LATENCY_EDGES_S
    latency_counts: tuple[int, ...] = field(default=(0,) * (len(LATENCY_EDGES_S) + 1))
    windows: tuple[int, ...] = ()  # the window ids merged
    replicas: tuple[str, ...] = ()
    sketches: Sketches = field(default_factory=Sketches)  # features and predictions, binned

    @property
    def served(self) -> int:
        """Requests the version is judged on: all but client errors."""
        return self.requests - self.client_errors

    @property
    def failed(self) -> int:
        """Requests it failed: server errors and rejections (503 overload, 504 deadline)."""
        return self.errors + self.rejected

    @property
    def timed(self) -> int:
        return sum(self.latency_counts)

    def device_s_per_prediction(self) -> float | None:
        """What one prediction cost in device time (None: none answered)."""
        return self.compute_s / self.answered if self.answered else None

    def error_rate(self) -> float | None:
        return self.failed / self.served if self.served else None

    def quantile_s(self, q: float) -> float | None:
        """The ``q`` quantile of latency, interpolated within its histogram bin (None: no
        timed request). Past the last edge it reads as the last edge."""
        total = self.timed
        if total == 0:
            return None
        rank = q * total
        cumulative = 0
        edges = self.latency_edges_s
        for index, count in enumerate(self.latency_counts):
            if count and cumulative + count >= rank:
                if index >= len(edges):
                    return edges[-1]
                low = edges[index - 1] if index else 0.0
                return low + (edges[index] - low) * (rank - cumulative) / count
            cumulative += count
        return edges[-1]

    def p99_s(self) -> float | None:
        return self.quantile_s(0.99)

    def slower_than(self, seconds: float) -> int:
        """Requests whose latency bin lies wholly above ``seconds``: certainly slower. (A bin
        straddling it is left out, so a test on this count errs towards passing.)"""
        edges = self.latency_edges_s
        return sum(
            count
            for index, count in enumerate(self.latency_counts)
            if index > 0 and edges[index - 1] >= seconds
        )

    def __add__(self, other: Traffic) -> Traffic:
        edges, latency = self.latency_edges_s, self.latency_counts
        if other.latency_edges_s == edges:
            latency = tuple(a + b for a, b in zip(latency, other.latency_counts, strict=True))
        elif self.timed == 0:  # nothing timed yet: take the other's edges
            edges, latency = other.latency_edges_s, other.latency_counts
        return Traffic(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            rejected=self.rejected + other.rejected,
            client_errors=self.client_errors + other.client_errors,
            compute_s=self.compute_s + other.compute_s,
            answered=self.answered + other.answered,
            latency_edges_s=edges,
            latency_counts=latency,
            windows=self.windows + other.windows,
            replicas=tuple(sorted(set(self.replicas) | set(other.replicas))),
            sketches=self.sketches + other.sketches,
        )

    @classmethod
    def of_window(cls, body: Mapping[str, Any], window_id: int) -> Traffic:
        """One window as reported (``serving.windows.Window.to_dict()``)."""
        replica = body.get("replica")
        counts = cls.from_dict(
            {**body, "windows": [window_id], "replicas": [replica] if replica else []}
        )
        return replace(counts, sketches=Sketches.of_window(body))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Traffic:
        """The inverse of `to_dict` (an analysis stores its merged counts this way; the
        sketches are not stored there: an analysis keeps its drift statistics instead)."""
        edges = tuple(float(e) for e in raw.get("latency_edges_s", ())) or LATENCY_EDGES_S
        counts = tuple(int(c) for c in raw.get("latency_counts", ()))
        if len(counts) != len(edges) + 1:
            counts = (0,) * (len(edges) + 1)
        return cls(
            requests=int(raw.get("requests", 0)),
            errors=int(raw.get("errors", 0)),
            rejected=int(raw.get("rejected", 0)),
            client_errors=int(raw.get("client_errors", 0)),
            compute_s=float(raw.get("compute_s", 0.0)),
            answered=int(raw.get("answered", 0)),
            latency_edges_s=edges,
            latency_counts=counts,
            windows=tuple(int(w) for w in raw.get("windows", ())),
            replicas=tuple(str(r) for r in raw.get("replicas", ())),
        )

    @classmethod
    def merge(cls, parts: Iterable[Traffic]) -> Traffic:
        return sum(parts, cls())

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "client_errors": self.client_errors,
            "compute_s": self.compute_s,
            "answered": self.answered,
            "latency_edges_s": list(self.latency_edges_s),
            "latency_counts": list(self.latency_counts),
            "windows": list(self.windows),
            "replicas": list(self.replicas),
        }

    def summary(self) -> dict[str, Any]:
        """What evidence shows: counts, rates, p99, the windows and replicas."""
        p99 = self.p99_s()
        rate = self.error_rate()
        return {
            "requests": self.requests,
            "served": self.served,
            "failed": self.failed,
            "errors": self.errors,
            "rejected": self.rejected,
            "client_errors": self.client_errors,
            "error_rate": round(rate, 6) if rate is not None else None,
            "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
            "device_ms_per_prediction": (
                round(per * 1000, 6) if (per := self.device_s_per_prediction()) else None
            ),
            "windows": list(self.windows),
            "replicas": list(self.replicas),
        }
