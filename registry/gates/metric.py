"""The metric gate: a floor and/or a ceiling on one evaluation metric of the candidate."""

from __future__ import annotations

from registry.gates.base import GateContext, GateResult, evaluate_hint


class MetricThresholdGate:
    """Passes when the candidate's evaluated ``metric`` lies within ``[min, max]``.

    MetricThresholdGate("auc", min=0.75)  # or max=0.6 for a loss, or both for a band
    """

    def __init__(self, metric: str, min: float | None = None, max: float | None = None) -> None:
        if min is None and max is None:
            raise ValueError(f"metric gate {metric!r}: give min, max or both")
        if min is not None and max is not None and min > max:
            raise ValueError(f"metric gate {metric!r}: min {min} is above max {max}")
        self.metric = metric
        self.min = min
        self.max = max
        self.name = f"metric:{metric}"

    @property
    def threshold(self) -> str:
        if self.min is not None and self.max is not None:
            return f"in [{self.min}, {self.max}]"
        return f">= {self.min}" if self.min is not None else f"<= {self.max}"

    def check(self, ctx: GateContext) -> GateResult:
        evaluation = ctx.candidate_eval
        if evaluation is None or self.metric not in evaluation.metrics:
            why = (
                "the candidate has no evaluation"
                if evaluation is None
                else f"its evaluation has no metric {self.metric!r} "
                f"(it has {', '.join(sorted(evaluation.metrics)) or 'none'})"
            )
            return GateResult.cannot_judge(
                self.name,
                self.threshold,
                f"{why}; run {evaluate_hint(ctx.candidate.ref)} first",
            )
        value = float(evaluation.metrics[self.metric])
        passed = (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        return GateResult(
            gate=self.name,
            passed=passed,
            observed=value,
            threshold=self.threshold,
            details={
                "metric": self.metric,
                "dataset_fingerprint": evaluation.dataset_fingerprint,
                "dataset_rows": evaluation.dataset_rows,
            },
        )
