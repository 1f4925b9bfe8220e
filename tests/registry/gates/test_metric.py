"""The metric gate, and run_gates collecting every verdict."""

from __future__ import annotations

import pytest

from registry.gates import Gate, GateContext, GateResult, MetricThresholdGate, run_gates
from tests.registry.gates.conftest import evaluation, version


def ctx(**metrics: float) -> GateContext:
    return GateContext(candidate=version(), candidate_eval=evaluation(metrics))


def test_metric_above_floor_passes() -> None:
    result = MetricThresholdGate("auc", min=0.75).check(ctx(auc=0.8))

    assert (result.gate, result.passed, result.observed, result.threshold) == (
        "metric:auc",
        True,
        0.8,
        ">= 0.75",
    )


def test_metric_below_floor_fails() -> None:
    result = MetricThresholdGate("auc", min=0.75).check(ctx(auc=0.7))

    assert result.blocking
    assert result.observed == 0.7


def test_metric_above_ceiling_fails() -> None:
    result = MetricThresholdGate("log_loss", max=0.6).check(ctx(log_loss=0.61))

    assert not result.passed
    assert result.threshold == "<= 0.6"


def test_metric_band_includes_its_edges() -> None:
    gate = MetricThresholdGate("auc", min=0.7, max=0.9)

    assert gate.check(ctx(auc=0.7)).passed
    assert gate.check(ctx(auc=0.9)).passed
    assert not gate.check(ctx(auc=0.95)).passed
    assert gate.check(ctx(auc=0.8)).threshold == "in [0.7, 0.9]"


def test_missing_evaluation_fails_saying_how_to_evaluate() -> None:
    result = MetricThresholdGate("auc", min=0.75).check(GateContext(candidate=version()))

    assert result.blocking
    assert "run `mlcp evaluate churn@2 --data PATH --label LABEL` first" in result.details["reason"]


def test_missing_metric_fails_naming_the_metrics_there() -> None:
    result = MetricThresholdGate("auc", min=0.75).check(ctx(accuracy=0.9))

    assert not result.passed
    assert "no metric 'auc' (it has accuracy)" in result.details["reason"]
    assert "mlcp evaluate churn@2" in result.details["reason"]


def test_metric_gate_without_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="give min, max or both"):
        MetricThresholdGate("auc")


class Exploding:
    name = "exploding"

    def check(self, ctx: GateContext) -> GateResult:
        raise RuntimeError("probe crashed")


def test_run_gates_collects_every_result_and_a_raising_gate_fails() -> None:
    gates: list[Gate] = [
        MetricThresholdGate("auc", min=0.95),
        Exploding(),
        MetricThresholdGate("accuracy", min=0.5),
    ]

    report = run_gates(gates, ctx(auc=0.9, accuracy=0.8))

    assert [r.gate for r in report.results] == ["metric:auc", "exploding", "metric:accuracy"]
    assert not report.passed
    assert [r.gate for r in report.failures] == ["metric:auc", "exploding"]
    assert report.results[1].details == {"error": "RuntimeError: probe crashed"}
    assert report.to_dict()["passed"] is False


def test_run_gates_passes_when_every_gate_passes() -> None:
    report = run_gates([MetricThresholdGate("auc", min=0.5)], ctx(auc=0.9))

    assert report.passed
    assert report.failures == report.warnings == []
