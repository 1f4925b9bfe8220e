"""The champion gate: candidate against champion, on the same rows."""

from __future__ import annotations

import pytest

from registry.gates import ChampionComparisonGate, GateContext
from tests.registry.gates.conftest import evaluation, version

CHAMPION = version(1)
CANDIDATE = version(2)


def ctx(candidate: float, champion: float, metric: str = "auc") -> GateContext:
    return GateContext(
        candidate=CANDIDATE,
        champion=CHAMPION,
        candidate_eval=evaluation({metric: candidate}, v=2),
        champion_eval=evaluation({metric: champion}, v=1),
    )


def test_candidate_better_than_champion_passes() -> None:
    result = ChampionComparisonGate("auc").check(ctx(candidate=0.85, champion=0.8))

    assert (result.gate, result.passed, result.threshold) == ("champion:auc", True, "drop <= 0")
    assert result.observed == pytest.approx(-0.05)
    assert result.details["candidate"] == 0.85
    assert result.details["champion"] == 0.8
    assert result.details["champion_version"] == 1
    assert result.details["dataset_fingerprint"] == "d" * 64


def test_candidate_worse_than_champion_without_allowance_fails() -> None:
    result = ChampionComparisonGate("auc").check(ctx(candidate=0.799, champion=0.8))

    assert result.blocking
    assert "worse than the champion" in result.details["reason"]


def test_candidate_within_max_drop_passes() -> None:
    result = ChampionComparisonGate("auc", max_drop=0.01).check(ctx(candidate=0.795, champion=0.8))

    assert result.passed
    assert result.observed == pytest.approx(0.005)
    assert result.threshold == "drop <= 0.01"


def test_drop_exactly_at_max_drop_passes_despite_float_rounding() -> None:
    result = ChampionComparisonGate("auc", max_drop=0.01).check(ctx(candidate=0.79, champion=0.8))

    assert result.passed
    assert result.observed == pytest.approx(0.01)


def test_candidate_worse_than_champion_beyond_max_drop_fails() -> None:
    result = ChampionComparisonGate("auc", max_drop=0.01).check(ctx(candidate=0.78, champion=0.8))

    assert result.blocking
    assert result.observed == pytest.approx(0.02)
    assert "exceeds max_drop 0.01" in result.details["reason"]


def test_relative_drop_beyond_allowance_fails() -> None:
    gate = ChampionComparisonGate("auc", max_relative_drop=0.05)

    assert gate.check(ctx(candidate=0.77, champion=0.8)).passed  # 3.75 % worse
    result = gate.check(ctx(candidate=0.75, champion=0.8))  # 6.25 % worse
    assert result.blocking
    assert result.details["relative_drop"] == pytest.approx(0.0625)
    assert "exceeds max_relative_drop 0.05" in result.details["reason"]


def test_relative_drop_from_a_zero_champion_is_unbounded() -> None:
    gate = ChampionComparisonGate("r2", max_relative_drop=0.5)

    result = gate.check(ctx(candidate=-0.1, champion=0.0, metric="r2"))

    assert result.blocking
    assert result.details["relative_drop"] is None
    assert gate.check(ctx(candidate=0.1, champion=0.0, metric="r2")).passed


def test_lower_is_better_treats_a_higher_candidate_as_a_drop() -> None:
    gate = ChampionComparisonGate("rmse", direction="lower", max_drop=0.1)

    worse = gate.check(ctx(candidate=1.3, champion=1.0, metric="rmse"))
    better = gate.check(ctx(candidate=0.9, champion=1.0, metric="rmse"))

    assert worse.blocking
    assert worse.observed == pytest.approx(0.3)
    assert better.passed
    assert better.observed == pytest.approx(-0.1)


def test_first_model_passes_on_floors_alone() -> None:
    result = ChampionComparisonGate("auc", max_drop=0.0).check(
        GateContext(candidate=CANDIDATE, candidate_eval=evaluation({"auc": 0.6}, v=2))
    )

    assert result.passed
    assert result.observed == 0.6
    assert result.details == {
        "first_model": True,
        "note": "no champion yet: passing on floors alone",
    }


def test_candidate_that_is_the_champion_passes_without_comparing() -> None:
    result = ChampionComparisonGate("auc").check(
        GateContext(
            candidate=CHAMPION, champion=CHAMPION, candidate_eval=evaluation({"auc": 0.8}, v=1)
        )
    )

    assert result.passed
    assert "is the champion" in result.details["note"]


def test_champion_evaluated_on_other_data_fails_saying_to_evaluate_it() -> None:
    result = ChampionComparisonGate("auc").check(
        GateContext(
            candidate=CANDIDATE,
            champion=CHAMPION,
            candidate_eval=evaluation({"auc": 0.9}, v=2),
            champion_eval=evaluation({"auc": 0.5}, v=1, dataset="e" * 64),
        )
    )

    assert result.blocking
    assert result.observed is None
    assert (
        "evaluate both on the same data: `mlcp evaluate churn@2 --data PATH --label churned`"
        in (result.details["reason"])
    )
    assert result.details["champion_dataset"] == "e" * 64


def test_champion_without_evaluation_fails_saying_to_evaluate_it() -> None:
    result = ChampionComparisonGate("auc").check(
        GateContext(
            candidate=CANDIDATE, champion=CHAMPION, candidate_eval=evaluation({"auc": 0.9}, v=2)
        )
    )

    assert result.blocking
    assert "evaluate both on the same data" in result.details["reason"]
    assert "--label" in result.details["reason"]


def test_candidate_without_evaluation_fails_saying_to_evaluate_it() -> None:
    result = ChampionComparisonGate("auc").check(
        GateContext(candidate=CANDIDATE, champion=CHAMPION)
    )

    assert result.blocking
    assert "`mlcp evaluate churn@2 --data PATH --label LABEL`" in result.details["reason"]


def test_negative_allowance_is_refused() -> None:
    with pytest.raises(ValueError, match="max_drop must be >= 0"):
        ChampionComparisonGate("auc", max_drop=-0.1)
