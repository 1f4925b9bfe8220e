"""`decide` on drift: a drifting canary fails its check; a drifting champion gets the policy's
alert, rollback or rollback to the best-matching earlier version, or a hold that says why."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controlplane.controller.decide import Decision, History, LiveModel, decide
from controlplane.controller.sketches import Sketches
from controlplane.controller.traffic import Traffic
from controlplane.policy import Policy
from tests.controlplane.controller.test_decide import NOW, traffic
from tests.controlplane.drift.conftest import reference_frame, version_reference, window

TRAINED = reference_frame()  # what v1 and v2 were trained on
LATER = TRAINED.assign(charges=TRAINED["charges"] + 20)  # v3 was trained after a shift
REFERENCES = {v: version_reference(TRAINED, v) for v in (1, 2)} | {3: version_reference(LATER, 3)}


def policy(action: str = "rollback", **drift: object) -> Policy:
    return Policy.from_dict(
        {
            "canary": {"steps": [10, 50], "min_requests": 100, "success_windows": 2},
            "slo": {"max_error_rate": 0.01, "min_requests": 50},
            "drift": {"action": action, **drift},
        }
    )


def live_traffic(version: int, shift: float, seed: int, rows: int = 500) -> Traffic:
    frame = reference_frame(rows, seed=seed)
    frame = frame.assign(charges=frame["charges"] + shift)
    sketches = Sketches(window(REFERENCES[version], frame))
    return replace(traffic(rows), sketches=sketches, windows=(seed,))


def champion(model: LiveModel, pol: Policy, shift: float, windows: int = 6) -> list[Decision]:
    """The champion's decisions over ``windows`` analyses, its detectors carried over."""
    history, out = History(), []
    version = model.champion
    assert version is not None
    for seed in range(windows):
        [d] = decide(model, {version: live_traffic(version, shift, seed)}, pol, history, NOW)
        out.append(d)
        assert d.analysis is not None
        assert d.analysis.drift is not None
        history = replace(history, drift={version: d.analysis.drift.state()})
    return out


PRODUCTION = LiveModel(
    "churn", revision=4, champion=2, fallback=1,
    references={2: REFERENCES[2]}, alternatives=(REFERENCES[1],),
)  # fmt: skip


def test_unchanged_traffic_leaves_the_champion_alone() -> None:
    decisions = champion(PRODUCTION, policy(), shift=0.0, windows=30)
    assert {d.action for d in decisions} == {"nothing"}


def test_confirmed_drift_rolls_the_champion_back_naming_the_evidence() -> None:
    decisions = champion(PRODUCTION, policy(), shift=10.0)  # half a standard deviation
    rollback = next(d for d in decisions if d.action != "nothing")
    assert (rollback.action, rollback.target) == ("rollback", 1)
    assert "charges" in rollback.reason
    drift = rollback.evidence["drift"]
    assert drift["drifting"] == ["charges"]
    charges = next(d for d in drift["detectors"] if d["name"] == "charges")
    assert charges["status"] == "drift"
    assert charges["cusum"] >= charges["threshold"]
    assert {"psi", "js", "p_value", "p_holm"} <= set(charges)
    assert "one false alarm per 100000 windows" in rollback.evidence["thresholds"]
    # The champion's SLO verdict is its own: drift is not an SLO breach.
    assert rollback.analysis is not None
    assert rollback.analysis.verdict == "pass"


def test_alert_only_says_so() -> None:
    decisions = champion(PRODUCTION, policy("alert"), shift=20.0)
    alert = next(d for d in decisions if d.action != "nothing")
    assert (alert.action, alert.code) == ("alert", "drift_alert")


def test_no_healthy_fallback_holds_and_says_so() -> None:
    decisions = champion(replace(PRODUCTION, fallback=None), policy(), shift=20.0)
    hold = next(d for d in decisions if d.action != "nothing")
    assert (hold.action, hold.code) == ("hold", "no_fallback")
    assert "no healthy version" in hold.reason


def test_best_match_returns_to_the_version_trained_on_traffic_like_today_s() -> None:
    # v2 (champion) and v1 were trained before the shift, v3 after it; v3 is retired.
    model = LiveModel(
        "churn", revision=9, champion=2, fallback=1, references={2: REFERENCES[2]},
        alternatives=(REFERENCES[3], REFERENCES[1]),
    )  # fmt: skip
    decisions = champion(model, policy("rollback_to_best_match"), shift=20.0)
    rollback = next(d for d in decisions if d.action != "nothing")
    assert (rollback.action, rollback.target) == ("rollback", 3)
    distances = rollback.evidence["reference_distances"]
    assert distances[3] < distances[2] == pytest.approx(distances[1], abs=0.02)


def test_best_match_holds_when_no_earlier_version_is_closer() -> None:
    model = replace(PRODUCTION, alternatives=(REFERENCES[1],))
    decisions = champion(model, policy("rollback_to_best_match"), shift=20.0)
    hold = next(d for d in decisions if d.action != "nothing")
    assert (hold.action, hold.code) == ("hold", "no_better_match")


def test_a_canary_whose_inputs_drift_from_its_own_reference_fails_its_drift_check() -> None:
    # v3 was trained on shifted data; live traffic is like v1's training data.
    model = LiveModel(
        "churn", revision=5, champion=1, challenger=3, canary_percent=10,
        references={1: REFERENCES[1], 3: REFERENCES[3]},
    )  # fmt: skip
    history = History()
    for seed in range(6):
        by_version = {1: live_traffic(1, 0.0, seed), 3: live_traffic(3, 0.0, 100 + seed)}
        decisions = decide(model, by_version, policy(), history, NOW)
        canary = next(d for d in decisions if d.version == 3)
        assert canary.analysis is not None
        assert canary.analysis.drift is not None
        if canary.action == "rollback":
            break
        history = replace(
            history,
            step=(*history.step, canary.analysis.verdict),
            drift={3: canary.analysis.drift.state()},
        )
    assert canary.action == "rollback"
    assert "drift" in {c.name for c in canary.analysis.failures}


def test_drift_off_or_without_a_reference_is_not_judged() -> None:
    drifted = {2: live_traffic(2, 20.0, 1)}
    for model, pol in ((PRODUCTION, policy(enabled=False)),
                       (replace(PRODUCTION, references={}), policy())):  # fmt: skip
        [d] = decide(model, drifted, pol, History(), NOW)
        assert d.action == "nothing"
        assert d.analysis is not None
        assert d.analysis.drift is None


def test_stored_policies_with_the_old_drift_keys_still_load() -> None:
    old = Policy.from_dict({"drift": {"psi_max": 0.2, "consecutive_windows": 3,
                                      "ks_pvalue_min": 0.01, "js_max": 0.1}})  # fmt: skip
    assert (old.drift.min_psi, old.drift.min_js) == (0.2, 0.1)
