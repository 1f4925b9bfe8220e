"""Exact tests on counts, for judging windows that may hold only a handful of requests.

    binomial_sf(7, 200, 0.01)          # P(X >= 7), X ~ Binomial(200, 1%): 0.0043
    fisher_greater(9, 100, 1, 1000)    # one-sided Fisher exact: is 9/100 above 1/1000?

Pure Python (``math.lgamma``): a few thousand terms at most per call, no SciPy needed. Both
sum the tail from the observed count outwards and stop once the terms no longer matter.
"""

from __future__ import annotations

import math

_NEGLIGIBLE = 1e-17  # relative to the running sum: terms past this change nothing


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the p-value of "more than a share p failed"."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    mode = int((n + 1) * p)
    if k <= mode:  # the upper tail holds most of the mass: 1 - P(X <= k - 1)
        return max(0.0, 1.0 - _binomial_cdf(k - 1, n, log_p, log_q))
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(_log_choose(n, i) + i * log_p + (n - i) * log_q)
        total += term
        if term < _NEGLIGIBLE * total:
            break
    return min(1.0, total)


def _binomial_cdf(k: int, n: int, log_p: float, log_q: float) -> float:
    total = 0.0
    for i in range(k, -1, -1):  # from k down: terms shrink away from the mode
        term = math.exp(_log_choose(n, i) + i * log_p + (n - i) * log_q)
        total += term
        if term < _NEGLIGIBLE * total:
            break
    return min(1.0, total)


def fisher_greater(a: int, n_a: int, b: int, n_b: int) -> float:
    """One-sided Fisher exact test: the p-value of "group A's rate a/n_a is higher than
    group B's b/n_b", conditional on the total count (hypergeometric upper tail)."""
    if n_a <= 0 or n_b <= 0:
        return 1.0
    total_n, m = n_a + n_b, a + b
    if m == 0:
        return 1.0
    high = min(n_a, m)
    low = max(0, m - n_b)
    log_denominator = _log_choose(total_n, m)

    def term(x: int) -> float:
        return math.exp(_log_choose(n_a, x) + _log_choose(n_b, m - x) - log_denominator)

    mode = int((n_a + 1) * (m + 1) / (total_n + 2))
    if a <= mode:  # most of the mass is above a: 1 - P(A <= a - 1)
        below = 0.0
        for x in range(a - 1, low - 1, -1):
            t = term(x)
            below += t
            if t < _NEGLIGIBLE * below:
                break
        return max(0.0, 1.0 - below)
    upper = 0.0
    for x in range(a, high + 1):
        t = term(x)
        upper += t
        if t < _NEGLIGIBLE * upper:
            break
    return min(1.0, upper)
