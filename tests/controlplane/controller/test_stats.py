"""The exact tests the controller's checks rest on, against known values."""

from __future__ import annotations

import math

import pytest

from controlplane.controller.stats import binomial_sf, fisher_greater


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (0, 10, 0.5, 1.0),
        (11, 10, 0.5, 0.0),
        (10, 10, 0.5, 0.5**10),
        (1, 10, 0.1, 1 - 0.9**10),
        (7, 200, 0.01, 0.0042955423),  # SciPy: binom.sf(6, 200, 0.01)
        (60, 5000, 0.01, 0.0911752),  # near the mean: the complement path
    ],
)
def test_binomial_upper_tail(k: int, n: int, p: float, expected: float) -> None:
    assert math.isclose(binomial_sf(k, n, p), expected, rel_tol=1e-3, abs_tol=1e-12)


def test_binomial_edges() -> None:
    assert binomial_sf(3, 10, 0.0) == 0.0
    assert binomial_sf(3, 10, 1.0) == 1.0


@pytest.mark.parametrize(
    ("a", "n_a", "b", "n_b", "expected"),
    [
        (9, 100, 1, 1000, 2.798e-09),  # SciPy: fisher_exact(..., alternative="greater")
        (2, 200, 1, 2000, 0.0231985),
        (0, 50, 5, 500, 1.0),
        (5, 500, 5, 500, 0.6236665),
    ],
)
def test_fisher_one_sided(a: int, n_a: int, b: int, n_b: int, expected: float) -> None:
    assert math.isclose(fisher_greater(a, n_a, b, n_b), expected, rel_tol=2e-3)


def test_fisher_with_nothing_to_compare_is_not_significant() -> None:
    assert fisher_greater(0, 10, 0, 10) == 1.0
    assert fisher_greater(3, 0, 1, 10) == 1.0
