"""Thresholds calibrated from a reference give the run length they were solved for."""

from __future__ import annotations

import numpy as np
import pytest

from controlplane.drift import calibration
from controlplane.drift.calibration import calibrate, simulate_increments, window_size_bucket

TEN_BINS = (400,) * 10


def test_the_markov_chain_run_length_matches_a_direct_simulation() -> None:
    [increments], _, _ = simulate_increments(TEN_BINS, 500, k=1.0, min_psi=0.0, references=1)
    # gate_share 0: the simulated increments alone (no nominal tail floor), as resampled below
    tail = calibration._TailModel(np.sort(increments), gate_share=0.0, k=1.0)
    predicted = calibration._average_run_length(tail, 2.0)

    rng = np.random.default_rng(3)
    runs = []
    for _ in range(3000):
        s, t = 0.0, 0
        while s < 2.0:
            t += 1
            s = max(0.0, s + increments[rng.integers(increments.size)])
        runs.append(t)
    assert float(np.mean(runs)) == pytest.approx(predicted, rel=0.08)


def test_a_calibrated_detector_alarms_about_once_per_target_windows() -> None:
    """Simulated unchanged traffic, each run with its own bootstrap reference (the reference
    is a sample too): false alarms per window match 1 / target."""
    target = 100.0
    h = calibrate(TEN_BINS, 500, k=1.0, target=target, min_psi=0.0).threshold
    rng = np.random.default_rng(5)
    shares = np.full(10, 0.1)
    alarms = windows = 0
    for _ in range(40):
        reference = rng.multinomial(4000, shares).astype(float)
        draws = rng.multinomial(500, shares, size=1000).astype(float)
        z = calibration.wilson_hilferty_many(*calibration.chi2_two_sample_many(draws, reference))
        s = 0.0
        for value in z:
            windows += 1
            s = max(0.0, s + value - 1.0)
            if s >= h:
                alarms, s = alarms + 1, 0.0
    assert alarms / windows == pytest.approx(1 / target, rel=0.35)


def test_a_longer_target_needs_a_higher_threshold_and_the_floor_lowers_it() -> None:
    short = calibrate(TEN_BINS, 500, 1.0, 1_000, min_psi=0.0).threshold
    long = calibrate(TEN_BINS, 500, 1.0, 100_000, min_psi=0.0).threshold
    floored = calibrate(TEN_BINS, 500, 1.0, 100_000, min_psi=0.05)
    assert short < long
    assert floored.threshold < long  # few windows of unchanged traffic reach the floor
    assert floored.gate_share < 0.05


def test_window_sizes_share_a_calibration_within_half_an_octave() -> None:
    assert window_size_bucket(500) == window_size_bucket(520) == 512
    assert window_size_bucket(90) == 91
    assert window_size_bucket(3) == 16
