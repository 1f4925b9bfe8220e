"""Calibrating a drift detector's threshold from its reference, by simulation.

The detector (``controlplane.drift.detector``) is a one-sided CUSUM over analysis windows:
``s = max(0, s + x)`` with ``x = z - k`` for a window whose effect reaches the floor and
``min(0, z - k)`` for one that does not (``z`` is the window's chi-square statistic as a
normal score). It alarms when ``s >= h``. This module finds the ``h`` that gives a target
average run length (windows between false alarms) when live traffic follows the reference:

1. Simulate: draw ``REFERENCES`` bootstrap copies of the reference (its rows resampled:
   the reference is a sample too, and every live window is compared with the same one, so
   its own noise is shared by all windows of a run), and for each, ``WINDOWS`` windows of
   ``rows`` rows drawn from the reference's shares; compute each window's increment ``x``
   exactly as the detector does (same statistic, same effect floor).
2. Run length: for each bootstrap copy, the CUSUM's average run length at threshold ``h``
   follows from the increments' distribution by Brook and Evans' Markov chain (``s``
   discretized into ``STATES`` cells; solve ``(I - Q) L = 1``). The tail of the increments
   is never taken thinner than the smaller of the test's nominal N(0, 1) tail and the share
   of windows past the floor, so the few windows a finite simulation can't show still count.
3. Solve: the false-alarm rate averaged over the copies, mean(1 / ARL), equals
   1 / ``target``; bisection on ``h``.

Deterministic (the random streams are seeded from the inputs) and cached in-process; about
0.2 s per (reference, window size) on one core.

    cal = calibrate(reference_counts=(400, 410, ...), rows=500, k=1.0, target=60_000,
                    min_psi=0.05)
    cal.threshold                      # h
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

REFERENCES = 16
WINDOWS = 4000
STATES = 64
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


@dataclass(frozen=True)
class Calibration:
    """A threshold for one detector at one window size, and what it was solved for."""

    threshold: float  # h: the CUSUM alarms at or above it
    k: float  # the reference value subtracted from every window's score
    target: float  # windows between false alarms, for this detector alone
    rows: int  # the window size calibrated at
    null_psi: float  # the mean PSI of windows drawn from the reference at that size
    gate_share: float  # the share of such windows whose effect reaches the floor

    def to_dict(self) -> dict[str, float]:
        return {
            "threshold": round(self.threshold, 4),
            "k": self.k,
            "target_windows": self.target,
            "rows": self.rows,
            "null_psi": round(self.null_psi, 5),
            "gate_share": round(self.gate_share, 5),
        }


def window_size_bucket(rows: int) -> int:
    """Window sizes are calibrated in half-octave steps (64, 91, 128, 181, 256 ...): a
    threshold barely moves within one, and each step costs a simulation."""
    rows = max(rows, 16)
    return round(2 ** (round(2 * math.log2(rows)) / 2))


def calibrate(
    reference_counts: tuple[int, ...],
    rows: int,
    k: float,
    target: float,
    min_psi: float,
    min_js: float = 0.0,
) -> Calibration:
    """The threshold giving ``target`` windows between false alarms for windows of about
    ``rows`` rows compared with this reference (see the module docstring)."""
    return _calibrate(
        tuple(int(c) for c in reference_counts),
        window_size_bucket(rows),
        float(k),
        float(target),
        float(min_psi),
        float(min_js),
    )


@lru_cache(maxsize=512)
def _calibrate(
    counts: tuple[int, ...], rows: int, k: float, target: float, min_psi: float, min_js: float
) -> Calibration:
    increments, psis, gated = simulate_increments(counts, rows, k, min_psi, min_js)
    gate_share = float(gated.mean())
    tails = [_TailModel(np.sort(x), gate_share, k) for x in increments]

    def rate(h: float) -> float:
        return float(np.mean([1.0 / _average_run_length(t, h) for t in tails]))

    low, high = 0.5, 40.0
    if rate(low) <= 1.0 / target:
        h = low
    else:
        while high - low > 0.01:
            middle = (low + high) / 2
            if rate(middle) > 1.0 / target:
                low = middle
            else:
                high = middle
        h = high
    return Calibration(h, k, target, rows, float(psis.mean()), gate_share)


def simulate_increments(
    counts: tuple[int, ...],
    rows: int,
    k: float,
    min_psi: float,
    min_js: float = 0.0,
    references: int = REFERENCES,
    windows: int = WINDOWS,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per bootstrap copy of the reference, the increments of ``windows`` simulated windows;
    and the PSI and gate of every simulated window (flattened)."""
    reference = np.asarray(counts, dtype=np.float64)
    total = int(reference.sum())
    shares = reference / total
    rng = np.random.default_rng(_seed(counts, rows))
    increments, all_psi, all_gated = [], [], []
    for _ in range(references):
        copy = rng.multinomial(total, shares).astype(np.float64)
        window = rng.multinomial(rows, shares, size=windows).astype(np.float64)
        z = wilson_hilferty_many(*chi2_two_sample_many(window, copy))
        psi = psi_many(window, copy)
        gated = psi >= min_psi
        if min_js > 0:
            gated &= js_distance_many(window, copy) >= min_js
        x = np.where(gated, z - k, np.minimum(0.0, z - k))
        increments.append(x)
        all_psi.append(psi)
        all_gated.append(gated)
    return increments, np.concatenate(all_psi), np.concatenate(all_gated)


# -- vectorized twins of controlplane.drift.stats (rows: windows, columns: bins) --------------
def chi2_two_sample_many(
    window: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = window.sum(axis=1, keepdims=True)
    r = reference.sum()
    pooled = (window + reference) / (n + r)
    present = pooled > 0
    safe = np.where(present, pooled, 1.0)
    expected_w, expected_r = n * safe, r * safe
    terms = (window - expected_w) ** 2 / expected_w + (reference - expected_r) ** 2 / expected_r
    statistic = np.where(present, terms, 0.0).sum(axis=1)
    return statistic, present.sum(axis=1) - 1


def wilson_hilferty_many(statistic: np.ndarray, df: np.ndarray) -> np.ndarray:
    df = np.maximum(df, 1)
    v = 2.0 / (9.0 * df)
    return (np.cbrt(np.maximum(statistic, 0.0) / df) - (1.0 - v)) / np.sqrt(v)


def psi_many(window: np.ndarray, reference: np.ndarray, pseudo: float = 0.5) -> np.ndarray:
    q = (window + pseudo) / (window.sum(axis=1, keepdims=True) + pseudo * window.shape[1])
    p = (reference + pseudo) / (reference.sum() + pseudo * reference.shape[-1])
    return ((q - p) * np.log(q / p)).sum(axis=1)


def js_distance_many(window: np.ndarray, reference: np.ndarray) -> np.ndarray:
    q = window / np.maximum(window.sum(axis=1, keepdims=True), 1)
    p = reference / max(reference.sum(), 1)
    m = (q + p) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(q > 0, q * np.log2(q / m), 0.0)
        right = np.where(p > 0, p * np.log2(p / m), 0.0)
    return np.sqrt(np.maximum(0.0, (left + right).sum(axis=1) / 2))


# -- run length -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TailModel:
    """An increment distribution: the simulated one, its upper tail floored by
    min(nominal N(0, 1) tail, share of windows past the effect floor)."""

    sorted_increments: np.ndarray
    gate_share: float
    k: float

    def survival(self, t: np.ndarray) -> np.ndarray:
        """P(x > t)."""
        x = self.sorted_increments
        empirical = 1.0 - np.searchsorted(x, t, side="right") / x.size
        nominal = 0.5 * _erfc((np.atleast_1d(t) + self.k) / math.sqrt(2.0))
        # A window past the floor usually scores high: bound the pair by its likelier part.
        floor = np.where(t > 0, np.minimum(nominal, self.gate_share), 0.0)
        return np.maximum(empirical, floor)


def _average_run_length(tail: _TailModel, h: float, states: int = STATES) -> float:
    """Brook-Evans: the CUSUM's expected windows to reach ``h`` from 0, increments rounded
    to multiples of ``h / states``."""
    width = h / states
    # pmf of the rounded increment m (x in ((m - 0.5) w, (m + 0.5) w]) for m in -states..states
    steps = np.arange(-states, states + 1)
    upper = tail.survival((steps - 0.5) * width)
    lower = tail.survival((steps + 0.5) * width)
    pmf = upper - lower
    pmf[0] = 1.0 - lower[0]  # everything at or below -states: back to 0 from any state
    index = np.arange(states)
    jump = index[None, :] - index[:, None]  # from state i to state j > 0: increment j - i
    q = np.where(jump >= -states, pmf[np.clip(jump + states, 0, 2 * states)], 0.0)
    # Reaching 0 from state i: any increment <= -i (the CUSUM's reflection at zero).
    cumulative = np.cumsum(pmf)  # P(m <= steps[j])
    q[:, 0] = cumulative[np.clip(-index + states, 0, 2 * states)]
    try:
        run = np.linalg.solve(np.eye(states) - q, np.ones(states))
    except np.linalg.LinAlgError:
        return math.inf
    return float(run[0]) if run[0] > 0 else math.inf


def _seed(counts: tuple[int, ...], rows: int) -> int:
    digest = hashlib.sha256(repr((counts, rows)).encode()).digest()
    return int.from_bytes(digest[:8], "little")
