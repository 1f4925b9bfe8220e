"""What a version's live traffic is compared with: its reference's bins, per input feature
and for its predictions, as the detectors use them.

    ref = VersionReference.of(3, version.reference_stats, version.prediction_reference)
    [d.name for d in ref.detectors]          # ["tenure_months", ..., "prediction"]
    d.window_counts(bins)                    # a window's sketch, grouped like the reference
    ref.shares_on("tenure_months", edges)    # this reference's mass on other bins (best match)

Sparse bins are merged with their neighbours (each group holds at least ``MIN_SHARE`` of
the reference's rows), so a tail value seen a handful of times in training can't make a
window look drifted on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_SHARE = 0.02
PREDICTION = "prediction"


@dataclass(frozen=True)
class Bins:
    """Counts over bin edges: a reference histogram, or a window's sketch (end bins open)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def rows(self) -> int:
        return sum(self.counts)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Bins | None:
        """From a histogram or sketch dict (``{"edges": [...], "counts": [...]}``); None when
        it has no bins."""
        if not isinstance(raw, Mapping):
            return None
        edges = tuple(float(e) for e in raw.get("edges") or ())
        counts = tuple(int(c) for c in raw.get("counts") or ())
        if len(edges) < 2 or len(counts) != len(edges) - 1:
            return None
        return cls(edges, counts)

    def __add__(self, other: Bins) -> Bins:
        if other.edges != self.edges:
            raise ValueError("bins with different edges do not add up")
        return Bins(
            self.edges, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        )


@dataclass(frozen=True)
class Detector:
    """One column a version is watched on: its reference bins, sparse ones merged."""

    name: str
    edges: tuple[float, ...]
    reference: tuple[int, ...]  # per group of bins
    groups: tuple[tuple[int, ...], ...]  # the reference's bin indices in each group

    @classmethod
    def of(cls, name: str, histogram: Bins) -> Detector:
        groups = group_sparse(histogram.counts)
        reference = tuple(sum(histogram.counts[i] for i in g) for g in groups)
        return cls(name, histogram.edges, reference, groups)

    def window_counts(self, bins: Bins) -> tuple[int, ...] | None:
        """The window's counts grouped like the reference; None when its edges differ."""
        if bins.edges != self.edges:
            return None
        return tuple(sum(bins.counts[i] for i in g) for g in self.groups)


def group_sparse(
    counts: Sequence[int], min_share: float = MIN_SHARE
) -> tuple[tuple[int, ...], ...]:
    """Adjacent bins grouped so that each group holds at least ``min_share`` of the rows."""
    total = sum(counts)
    if total <= 0:
        return tuple((i,) for i in range(len(counts)))
    groups: list[list[int]] = []
    current: list[int] = []
    held = 0
    for index, count in enumerate(counts):
        current.append(index)
        held += count
        if held >= min_share * total:
            groups.append(current)
            current, held = [], 0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return tuple(tuple(g) for g in groups)


@dataclass(frozen=True)
class VersionReference:
    """A version's detectors (its input features in input order, then its predictions) and
    its features' reference statistics (to compare other traffic with it)."""

    version: int
    detectors: tuple[Detector, ...]
    features: Mapping[str, Mapping[str, Any]]
    prediction_source: str | None = None  # evaluation | training

    @classmethod
    def of(
        cls,
        version: int,
        reference_stats: Mapping[str, Any] | None,
        prediction_reference: Mapping[str, Any] | None = None,
    ) -> VersionReference:
        stats = reference_stats if isinstance(reference_stats, Mapping) else {}
        raw = stats.get("features")
        features: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        order = stats.get("inputs") or list(features)
        detectors = []
        for name in order:
            entry = features.get(name)
            bins = Bins.from_dict(entry.get("histogram")) if isinstance(entry, Mapping) else None
            if bins is not None and bins.rows > 0:
                detectors.append(Detector.of(str(name), bins))
        source = None
        if isinstance(prediction_reference, Mapping):
            output = prediction_reference.get("output")
            bins = Bins.from_dict(output.get("histogram")) if isinstance(output, Mapping) else None
            if bins is not None and bins.rows > 0:
                detectors.append(Detector.of(PREDICTION, bins))
                source = str(prediction_reference.get("source") or "unknown")
        return cls(version, tuple(detectors), dict(features), source)

    def detector(self, name: str) -> Detector | None:
        return next((d for d in self.detectors if d.name == name), None)

    def shares_on(self, name: str, edges: Sequence[float]) -> list[float] | None:
        """This reference's share of rows in each bin of ``edges`` (end bins open), read off
        its own histogram (uniform within a quantile bin, point masses for a feature binned
        by value); None when it has no histogram for ``name``."""
        entry = self.features.get(name)
        histogram = entry.get("histogram") if isinstance(entry, Mapping) else None
        own = Bins.from_dict(histogram)
        if own is None or own.rows == 0:
            return None
        assert histogram is not None
        values = histogram.get("values")
        inner = list(edges)[1:-1]
        below = [_share_below(own, values, x) for x in inner]
        cuts = [0.0, *below, 1.0]
        return [max(0.0, cuts[i + 1] - cuts[i]) for i in range(len(cuts) - 1)]


def _share_below(own: Bins, values: Sequence[float] | None, x: float) -> float:
    """P(X < x) under a reference histogram."""
    total = own.rows
    if values and len(values) == len(own.counts):
        return sum(c for v, c in zip(values, own.counts, strict=True) if v < x) / total
    below = 0.0
    for index, count in enumerate(own.counts):
        low, high = own.edges[index], own.edges[index + 1]
        if x >= high:
            below += count
        elif x > low:
            below += count * (x - low) / (high - low)
    return below / total
