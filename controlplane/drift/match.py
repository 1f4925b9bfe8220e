"""Which version's training reference is closest to live traffic: the target of a
``rollback_to_best_match``.

    distances = reference_distances([v1_ref, v2_ref], live_features)   # {1: 0.04, 2: 0.31}

The distance is the mean Jensen-Shannon distance, over the features live traffic was
sketched on, between the live bins and the candidate reference's share of rows in those
same bins (read off the candidate's own histogram: see `VersionReference.shares_on`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.drift.reference import Bins, VersionReference
from controlplane.drift.stats import js_distance


def reference_distance(reference: VersionReference, live: Mapping[str, Bins]) -> float | None:
    """Mean JS distance of ``live`` from ``reference`` over the features both have; None
    when they share none."""
    distances = []
    for name, bins in live.items():
        if bins.rows == 0:
            continue
        shares = reference.shares_on(name, bins.edges)
        if shares is not None and sum(shares) > 0:
            distances.append(js_distance(bins.counts, shares))
    return sum(distances) / len(distances) if distances else None


def reference_distances(
    references: Iterable[VersionReference], live: Mapping[str, Bins]
) -> dict[int, float]:
    out = {}
    for reference in references:
        distance = reference_distance(reference, live)
        if distance is not None:
            out[reference.version] = round(distance, 5)
    return out
