"""Reference samples and windows drawn from them, binned as serving bins them."""

from __future__ import annotations

import numpy as np

from controlplane.drift import Bins, VersionReference
from features.reference import bin_index, reference_statistics

RNG_SEED = 11


def reference_frame(rows: int = 4000, seed: int = RNG_SEED):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, rows).astype(np.float32),
            "charges": rng.normal(65, 20, rows).astype(np.float32),
            "calls": rng.poisson(1.5, rows).astype(np.float32),
            "contract": rng.choice([1.0, 12.0, 24.0], rows).astype(np.float32),
        }
    )


def version_reference(frame, version: int = 1) -> VersionReference:
    return VersionReference.of(version, reference_statistics(frame, columns=list(frame.columns)))


def window(reference: VersionReference, frame) -> dict[str, Bins]:
    """``frame``'s rows binned on each feature's reference edges."""
    out = {}
    for name in frame.columns:
        detector = reference.detector(name)
        assert detector is not None
        values = frame[name].to_numpy(np.float64)
        counts = np.bincount(bin_index(values, detector.edges), minlength=len(detector.edges) - 1)
        out[name] = Bins(detector.edges, tuple(int(c) for c in counts))
    return out
