"""Reference statistics of a training set, per feature: what drift detection compares with.

Numeric features keep moments, quantiles and a histogram whose bins hold about equal shares
of the training rows (edges at the deciles; a feature with few distinct values gets one bin
per value instead), so live traffic binned on the same edges can be compared bin by bin
(PSI, Jensen-Shannon, a chi-square test) with every bin well filled. Categorical features
keep category frequencies. Both keep their null share. The result is plain JSON.

    stats = reference_statistics(frame, columns=("tenure", "charges"))   # exactly, in order
    stats["features"]["tenure"]["histogram"]     # {"edges": [...], "counts": [...], ...}
    numeric_statistics(predictions)              # one numeric column (a model's outputs)

A value binned on ``edges`` falls in bin ``searchsorted(edges[1:-1], value, "right")``: a
value on an inner edge counts in the bin above it, values outside the edges in the end
bins. Serving's window sketches bin the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
BINS = 10
# At most this many distinct values: one bin per value (a count, a coded category).
MAX_DISCRETE = 20
TOP_CATEGORIES = 50


def reference_statistics(
    frame: pd.DataFrame,
    exclude: tuple[str, ...] = (),
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``{"rows": n, "inputs": [...], "features": {name: {...}}}``: for ``columns`` exactly
    and in that order when given (a model's inputs), else every column not in ``exclude``."""
    import pandas as pd

    names = list(columns) if columns is not None else [c for c in frame.columns if c not in exclude]
    features: dict[str, Any] = {}
    for name in names:
        column = frame[name]
        null_share = float(column.isna().mean()) if len(column) else 0.0
        present = column.dropna()
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = present.to_numpy(dtype=np.float64)
            features[str(name)] = {"null_share": null_share, **numeric_statistics(values)}
        else:
            counts = present.astype(str).value_counts(normalize=True).head(TOP_CATEGORIES)
            features[str(name)] = {
                "kind": "categorical",
                "null_share": null_share,
                "frequencies": {str(k): float(v) for k, v in counts.items()},
            }
    return {"rows": len(frame), "inputs": [str(n) for n in names], "features": features}


def numeric_statistics(values: np.ndarray) -> dict[str, Any]:
    """One numeric column: count, moments, quantiles and an equal-share histogram."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"kind": "numeric", "count": 0}
    edges, binning = bin_edges(values)
    counts = np.bincount(bin_index(values, edges), minlength=len(edges) - 1)
    histogram: dict[str, Any] = {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "binning": binning,
    }
    if binning == "values":  # each bin holds exactly one value: keep them (point masses)
        histogram["values"] = [float(v) for v in np.unique(values)]
    return {
        "kind": "numeric",
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in QUANTILES},
        "histogram": histogram,
    }


def bin_edges(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Edges at the deciles (``"quantile"``), or between the distinct values when there are
    few (``"values"``). Always at least two edges."""
    distinct = np.unique(values)
    if distinct.size == 1:
        return np.array([distinct[0], distinct[0] + 1.0]), "values"
    if distinct.size <= MAX_DISCRETE:
        middles = (distinct[:-1] + distinct[1:]) / 2
        return np.concatenate([[distinct[0]], middles, [distinct[-1]]]), "values"
    inner = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
    return np.concatenate([[distinct[0]], inner, [distinct[-1]]]), "quantile"


def bin_index(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """The bin of each value on ``edges`` (end bins open), as serving's sketches count it."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    return np.searchsorted(inner, values, side="right")
