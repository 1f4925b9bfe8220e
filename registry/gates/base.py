"""What every gate shares: the context it judges, the result it returns, and the report.

A gate is a small object with a ``name`` and ``check(ctx) -> GateResult``; it never
reaches for a store. Everything it needs (evaluations on the same dataset, the data
frames, a latency probe) reaches it through ``GateContext``, filled by the control plane.

    report = run_gates([MetricThresholdGate("auc", min=0.8)], ctx)
    report.passed, report.failures, report.warnings
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from registry.evaluation import Evaluation
from registry.lineage import ModelVersion

if TYPE_CHECKING:
    import pandas as pd

Severity = Literal["critical", "warning"]


class Timing(NamedTuple):
    """One timed forward pass: its wall time, and whether the process was preempted meanwhile
    (then it measured a neighbour as much as the model)."""

    seconds: float
    preempted: bool = False


# (batch_size, iterations) -> one Timing (or plain seconds) per forward pass, warm-up excluded.
LatencyProbe = Callable[[int, int], Sequence[Timing | float]]


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict. ``passed`` False with severity "warning" is reported, not blocking."""

    gate: str
    passed: bool
    observed: float | str | None
    threshold: float | str | None
    details: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity = "critical"

    @classmethod
    def cannot_judge(
        cls, gate: str, threshold: float | str | None, reason: str, **details: Any
    ) -> GateResult:
        """A failed result for a gate that lacked what it needs (an evaluation, data, a probe)."""
        return cls(gate, False, None, threshold, {"reason": reason, **details})

    @property
    def blocking(self) -> bool:
        return not self.passed and self.severity == "critical"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateContext:
    """All a gate may look at. Missing inputs are None; a gate that needs one fails saying so."""

    candidate: ModelVersion
    champion: ModelVersion | None = None
    candidate_eval: Evaluation | None = None  # the candidate's latest evaluation
    champion_eval: Evaluation | None = None  # the champion on the *same* dataset fingerprint
    eval_data: pd.DataFrame | None = None  # the evaluation rows (data-quality gate)
    training_data: pd.DataFrame | None = None  # the training rows, when the file is at hand
    latency_probe: LatencyProbe | None = None
    device: str = "cpu"
    machine_class: str | None = None  # what this machine is called in latency budgets


def evaluate_hint(ref: str, like: Evaluation | None = None) -> str:
    """The command that gives ``ref`` the evaluation a gate lacks, with every required option
    (the label of ``like``, the evaluation to match, when there is one).

    evaluate_hint("churn@2")  # "`mlcp evaluate churn@2 --data PATH --label LABEL`"
    """
    label = like.label_column if like is not None else "LABEL"
    return f"`mlcp evaluate {ref} --data PATH --label {label}`"


class Gate(Protocol):
    name: str

    def check(self, ctx: GateContext) -> GateResult: ...


@dataclass(frozen=True)
class GateReport:
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return not any(r.blocking for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if r.blocking]

    @property
    def warnings(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed and r.severity == "warning"] + [
            r for r in self.results if r.passed and r.details.get("warnings")
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": [r.to_dict() for r in self.results]}


def run_gates(gates: Sequence[Gate], ctx: GateContext) -> GateReport:
    """Run every gate (a failing one doesn't stop the rest: CI wants all the reasons at once).

    A gate that raises is a failed gate, with the error in its details, not a crash.
    """
    results = []
    for gate in gates:
        try:
            results.append(gate.check(ctx))
        except Exception as exc:
            error = {"error": f"{type(exc).__name__}: {exc}"}
            results.append(GateResult(gate.name, False, None, None, error))
    return GateReport(tuple(results))
