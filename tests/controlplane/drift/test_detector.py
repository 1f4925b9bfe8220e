"""One version's drift, window after window: no alarm on unchanged traffic, a quick one on a
real shift, none on a trivial shift however large the window."""

from __future__ import annotations

import numpy as np

from controlplane.drift import Bins, analyse_drift
from controlplane.policy import Drift
from tests.controlplane.drift.conftest import reference_frame, version_reference, window

POLICY = Drift(target_run_length=10_000)


def run(frames, policy: Drift = POLICY, reference_rows: int = 4000):
    reference = version_reference(reference_frame(reference_rows))
    state: dict[str, float] = {}
    results = []
    for frame in frames:
        result = analyse_drift(reference, window(reference, frame), None, policy, state)
        state = result.state()
        results.append(result)
    return results


def test_unchanged_traffic_raises_no_alarm_over_many_windows() -> None:
    results = run(reference_frame(500, seed=100 + i) for i in range(200))
    assert not any(r.confirmed for r in results)
    assert all(r.judged for r in results)


def test_a_half_sigma_shift_in_one_feature_is_confirmed_within_a_few_windows() -> None:
    def shifted(i: int):
        frame = reference_frame(500, seed=300 + i)
        return frame.assign(charges=frame["charges"] + 10.0)  # 0.5 sd

    results = run(shifted(i) for i in range(10))
    first = next(i for i, r in enumerate(results) if r.confirmed)
    assert first < 3
    alarm = results[first].alarms
    assert [a.name for a in alarm] == ["charges"]
    assert alarm[0].threshold is not None
    assert alarm[0].cusum >= alarm[0].threshold
    assert alarm[0].psi is not None
    assert alarm[0].psi > 0.1
    assert alarm[0].p_holm is not None
    assert alarm[0].p_holm < 1e-6


def test_a_trivial_shift_in_huge_windows_is_significant_but_never_an_alarm() -> None:
    def nudged(i: int):
        frame = reference_frame(100_000, seed=500 + i)
        return frame.assign(charges=frame["charges"] + 1.0)  # 0.05 sd

    results = run((nudged(i) for i in range(10)), reference_rows=100_000)
    charges = [next(d for d in r.results if d.name == "charges") for r in results]
    assert all(d.p_value is not None and d.p_value < 1e-4 for d in charges)
    assert not any(d.effect for d in charges)
    assert not any(r.confirmed for r in results)


def test_a_shift_in_a_category_s_frequency_is_confirmed() -> None:
    rng = np.random.default_rng(9)

    def skewed(i: int):
        frame = reference_frame(500, seed=700 + i)
        return frame.assign(contract=rng.choice([1.0, 12.0, 24.0], 500, p=[0.6, 0.2, 0.2]))

    results = run(skewed(i) for i in range(10))
    assert any(r.confirmed for r in results[:3])
    assert {a.name for r in results for a in r.alarms} == {"contract"}


def test_windows_too_small_or_on_other_edges_are_not_judged() -> None:
    reference = version_reference(reference_frame())
    small = window(reference, reference_frame(20, seed=1))
    result = analyse_drift(reference, small, None, POLICY, {"tenure": 1.5})
    assert {r.status for r in result.results} == {"too_few_rows"}
    assert result.state()["tenure"] == 1.5  # a window not judged leaves the CUSUM alone
    assert not result.judged

    other = {"tenure": Bins((0.0, 1.0, 2.0), (300, 300))}
    result = analyse_drift(reference, other, None, POLICY, {})
    tenure = next(r for r in result.results if r.name == "tenure")
    assert tenure.status == "not_sketched"
    assert "restart" in (tenure.note or "")
