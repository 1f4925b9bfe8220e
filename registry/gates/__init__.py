"""Evaluation gates: each judges a candidate version against the promotion policy.

    from registry.gates import GateContext, MetricThresholdGate, run_gates

    report = run_gates([MetricThresholdGate("auc", min=0.8)], GateContext(candidate=version))

Importing this package imports neither torch nor Great Expectations: the latency probe
imports torch when it is built, the data-quality gate GX when it runs.
"""

from registry.gates.base import (
    Gate,
    GateContext,
    GateReport,
    GateResult,
    LatencyProbe,
    Severity,
    Timing,
    run_gates,
)
from registry.gates.champion import ChampionComparisonGate
from registry.gates.data_quality import DataQualityGate, ExpectationSpec
from registry.gates.drift_reference import DriftReferenceGate
from registry.gates.latency import LatencyBudgetGate, make_forward_probe
from registry.gates.metric import MetricThresholdGate
from registry.gates.schema import SchemaCompatibilityGate, TensorSpecDecl

__all__ = [
    "ChampionComparisonGate",
    "DataQualityGate",
    "DriftReferenceGate",
    "ExpectationSpec",
    "Gate",
    "GateContext",
    "GateReport",
    "GateResult",
    "LatencyBudgetGate",
    "LatencyProbe",
    "MetricThresholdGate",
    "SchemaCompatibilityGate",
    "Severity",
    "TensorSpecDecl",
    "Timing",
    "make_forward_probe",
    "run_gates",
]
