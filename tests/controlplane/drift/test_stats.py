"""Drift statistics against known values."""

from __future__ import annotations

import math

import pytest

from controlplane.drift.stats import (
    chi2_sf,
    chi2_two_sample,
    holm,
    js_distance,
    psi,
    wilson_hilferty,
)


@pytest.mark.parametrize(
    ("x", "df", "expected"),
    [(3.841459, 1, 0.05), (5.991465, 2, 0.05), (16.918978, 9, 0.05), (21.665994, 9, 0.01),
     (0.0, 3, 1.0), (100.0, 9, 1.9e-17)],
)  # fmt: skip
def test_chi2_sf_matches_the_tables(x: float, df: int, expected: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(expected, rel=0.05, abs=1e-12)


def test_identical_bins_have_no_drift() -> None:
    counts = [100, 200, 300, 400]
    assert psi(counts, counts) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(counts, counts) == pytest.approx(0.0, abs=1e-7)
    statistic, df, p = chi2_two_sample(counts, [2 * c for c in counts])
    assert (statistic, df, p) == (pytest.approx(0.0), 3, pytest.approx(1.0))


def test_disjoint_bins_are_as_far_apart_as_it_gets() -> None:
    assert js_distance([10, 0], [0, 10]) == pytest.approx(1.0)
    assert psi([10, 0], [0, 10]) > 5
    assert chi2_two_sample([10, 0], [0, 10])[2] < 1e-3


def test_psi_of_a_known_shift() -> None:
    # q = (0.6, 0.4) against p = (0.5, 0.5): (0.1) ln 1.2 + (-0.1) ln 0.8
    expected = 0.1 * math.log(1.2) - 0.1 * math.log(0.8)
    assert psi([60_000, 40_000], [50_000, 50_000]) == pytest.approx(expected, rel=1e-4)


def test_chi2_two_sample_drops_bins_empty_on_both_sides() -> None:
    assert chi2_two_sample([5, 0, 5], [50, 0, 50])[1] == 1


def test_wilson_hilferty_turns_the_chi2_quantiles_into_normal_ones() -> None:
    assert wilson_hilferty(16.918978, 9) == pytest.approx(1.6449, abs=0.01)
    assert wilson_hilferty(21.665994, 9) == pytest.approx(2.3263, abs=0.02)
    assert wilson_hilferty(8.34283, 9) == pytest.approx(0.0, abs=0.01)  # the median


def test_holm_adjusts_step_down() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
