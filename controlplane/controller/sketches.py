"""One version's feature and prediction sketches over an analysis: replicas' windows merged.

    sketches = Sketches.of_window(body)        # a mlcp_serving_windows row's body
    merged = sketches + other                  # bin counts add up where the edges agree
    merged.features["tenure_months"].counts    # per bin, over every window merged

A window sketched on other edges than those already merged (a replica still on an older
reference) is left out of that column and counted in ``mismatched``, never mixed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.drift.reference import Bins


@dataclass(frozen=True)
class Sketches:
    features: Mapping[str, Bins] = field(default_factory=dict)
    predictions: Bins | None = None
    mismatched: int = 0  # columns of windows left out: their edges differed

    @classmethod
    def of_window(cls, body: Mapping[str, Any]) -> Sketches:
        raw = body.get("features")
        features = {}
        if isinstance(raw, Mapping):
            for name, sketch in raw.items():
                bins = Bins.from_dict(sketch)
                if bins is not None:
                    features[str(name)] = bins
        return cls(features, Bins.from_dict(body.get("predictions")))

    def __add__(self, other: Sketches) -> Sketches:
        features = dict(self.features)
        mismatched = self.mismatched + other.mismatched
        for name, bins in other.features.items():
            merged, lost = _add(features.get(name), bins)
            if merged is not None:
                features[name] = merged
            mismatched += lost
        predictions, lost = _add(self.predictions, other.predictions)
        return Sketches(features, predictions, mismatched + lost)


def _add(mine: Bins | None, theirs: Bins | None) -> tuple[Bins | None, int]:
    if mine is None or theirs is None:
        return (mine or theirs), 0
    if mine.edges != theirs.edges:
        # Keep the side with more rows: the replicas that already sketch on the new edges.
        return (mine if mine.rows >= theirs.rows else theirs), 1
    return mine + theirs, 0
