"""Reference statistics of a training set, per feature: what drift detection compares with.

Numeric features keep quantiles and a fixed-edge histogram (so live traffic can be binned
the same way for PSI / KS / Jensen-Shannon); categorical ones keep category frequencies.
Both keep their null share. The result is plain JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
BINS = 10
TOP_CATEGORIES = 50


def reference_statistics(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{"rows": n, "features": {name: {...}}}`` for every column not in ``exclude``."""
    import pandas as pd

    features: dict[str, Any] = {}
    for name in frame.columns:
        if name in exclude:
            continue
        column = frame[name]
        null_share = float(column.isna().mean()) if len(column) else 0.0
        present = column.dropna()
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = present.to_numpy(dtype=np.float64)
            features[str(name)] = {"kind": "numeric", "null_share": null_share, **_numeric(values)}
        else:
            counts = present.astype(str).value_counts(normalize=True).head(TOP_CATEGORIES)
            features[str(name)] = {
                "kind": "categorical",
                "null_share": null_share,
                "frequencies": {str(k): float(v) for k, v in counts.items()},
            }
    return {"rows": len(frame), "features": features}


def _numeric(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0}
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, BINS + 1) if hi > lo else np.array([lo, lo + 1.0])
    counts, _ = np.histogram(values, bins=edges)
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in QUANTILES},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
