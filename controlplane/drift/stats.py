"""Drift statistics on binned counts: a window's bins against the reference's.

    psi(window, reference)                 # population stability index (smoothed)
    js_distance(window, reference)         # Jensen-Shannon distance, base 2: within [0, 1]
    chi2_two_sample(window, reference)     # (statistic, df, p-value): same distribution?
    wilson_hilferty(statistic, df)         # the statistic as a standard-normal score
    holm([0.01, 0.04, 0.2])                # p-values adjusted for testing several at once

Counts, not shares: the test needs to know how many rows each side saw. Pure Python and
NumPy-free so the controller's decision stays cheap and dependency-light; the calibration
(``controlplane.drift.calibration``) has vectorized twins of `psi` and `wilson_hilferty`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Added to every bin's count before PSI's logarithms: an empty bin on either side would
# make it infinite. Half a row (Jeffreys) moves a well-filled bin's share by under 1%.
PSEUDO_COUNT = 0.5


def shares(counts: Sequence[float], pseudo: float = 0.0) -> list[float]:
    total = sum(counts) + pseudo * len(counts)
    return [(c + pseudo) / total for c in counts] if total > 0 else [0.0] * len(counts)


def psi(window: Sequence[float], reference: Sequence[float]) -> float:
    """Population stability index: sum over bins of (q - p) * ln(q / p), with smoothed
    shares. Rules of thumb: < 0.1 stable, 0.1-0.25 a shift, > 0.25 a large one."""
    q, p = shares(window, PSEUDO_COUNT), shares(reference, PSEUDO_COUNT)
    return sum((qi - pi) * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))


def js_distance(window: Sequence[float], reference: Sequence[float]) -> float:
    """Jensen-Shannon distance (the square root of the divergence, base 2): 0 for equal
    distributions, 1 for disjoint ones."""
    q, p = shares(window), shares(reference)
    divergence = 0.0
    for qi, pi in zip(q, p, strict=True):
        m = (qi + pi) / 2
        if qi > 0:
            divergence += qi * math.log2(qi / m) / 2
        if pi > 0:
            divergence += pi * math.log2(pi / m) / 2
    return math.sqrt(max(0.0, divergence))


def chi2_two_sample(
    window: Sequence[float], reference: Sequence[float]
) -> tuple[float, int, float]:
    """Pearson's chi-square test of homogeneity on the 2 x k table (window, reference):
    ``(statistic, degrees of freedom, p-value)``. Bins empty on both sides are dropped.
    The reference is a sample too, so its own noise is part of the test."""
    n, r = sum(window), sum(reference)
    if n <= 0 or r <= 0:
        return 0.0, 0, 1.0
    statistic, bins = 0.0, 0
    for c, f in zip(window, reference, strict=True):
        pooled = (c + f) / (n + r)
        if pooled <= 0:
            continue
        bins += 1
        expected_c, expected_f = n * pooled, r * pooled
        statistic += (c - expected_c) ** 2 / expected_c + (f - expected_f) ** 2 / expected_f
    df = bins - 1
    return statistic, df, chi2_sf(statistic, df) if df > 0 else 1.0


def wilson_hilferty(statistic: float, df: int) -> float:
    """A chi-square statistic on ``df`` degrees of freedom as a standard-normal score (the
    Wilson-Hilferty cube-root transform): about N(0, 1) when the bins agree, large when not."""
    if df <= 0:
        return 0.0
    v = 2.0 / (9.0 * df)
    return ((max(statistic, 0.0) / df) ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df/2, x/2)."""
    if x <= 0:
        return 1.0
    return gamma_q(df / 2.0, x / 2.0)


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma function: a series below ``a + 1``, a continued
    fraction (modified Lentz) above it, as in Numerical Recipes' ``gammq``."""
    if x <= 0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(1000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: each adjusted p-value can be compared with alpha as if
    it were the only test, and the chance of any false rejection stays within alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
