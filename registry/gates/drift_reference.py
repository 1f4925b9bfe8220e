"""The drift-reference gate: a version must carry its training statistics to be watched."""

from __future__ import annotations

from collections.abc import Mapping

from registry.gates.base import GateContext, GateResult


class DriftReferenceGate:
    """Passes when the candidate has per-feature reference statistics (features.reference).

    Without them the rollback controller has nothing to compare live traffic with.

        DriftReferenceGate()
    """

    name = "drift_reference"

    def check(self, ctx: GateContext) -> GateResult:
        stats = ctx.candidate.reference_stats
        stats = stats if isinstance(stats, Mapping) else {}
        features = stats.get("features")
        if not isinstance(features, Mapping) or not features:
            return GateResult(
                gate=self.name,
                passed=False,
                observed=0,
                threshold=">= 1",
                details={
                    "reason": "no reference statistics: register with --training-data so the "
                    "rollback controller can detect drift"
                },
            )
        return GateResult(
            gate=self.name,
            passed=True,
            observed=len(features),
            threshold=">= 1",
            details={"rows": stats.get("rows"), "features": sorted(features)},
        )
