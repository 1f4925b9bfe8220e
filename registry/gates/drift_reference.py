"""The drift-reference gate: a version must carry reference statistics that match its inputs
to be watched for drift.

Present is not enough: a reference built over a training file's every column (join keys,
timestamp, label) names columns the model never sees, and the controller could not tell
which live column is which. So the reference must cover exactly the model's inputs: as many
features as its input tensor has columns, each with statistics, in input order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.gates.base import GateContext, GateResult
from registry.gates.schema import input_specs

THRESHOLD = "= model inputs"  # one feature per input column, in input order
FIX = (
    "re-register with --training-data and --feature-service (its features are the inputs) "
    "or --features a,b,c, so the reference covers exactly the model's inputs"
)


class DriftReferenceGate:
    """Passes when the candidate's reference statistics (features.reference) cover exactly
    its inputs, in order. Without them the rollback controller can't watch it for drift.

        DriftReferenceGate()
    """

    name = "drift_reference"

    def check(self, ctx: GateContext) -> GateResult:
        version = ctx.candidate
        stats = version.reference_stats if isinstance(version.reference_stats, Mapping) else {}
        features = stats.get("features")
        if not isinstance(features, Mapping) or not features:
            return self._fail(
                0, "no reference statistics: register with --training-data so the rollback "
                "controller can detect drift",
            )  # fmt: skip
        inputs = [str(n) for n in (stats.get("inputs") or features)]
        width = _input_width(version.signature)
        details: dict[str, Any] = {
            "rows": stats.get("rows"),
            "features": inputs,
            "model_inputs": width,
            "predictions": _prediction_source(version.prediction_reference),
        }
        if width is not None and len(inputs) != width:
            return self._fail(
                len(inputs),
                f"the reference covers {len(inputs)} columns ({', '.join(inputs)}) but "
                f"{version.ref} takes {width} inputs; {FIX}",
                details,
            )
        missing = [n for n in inputs if not isinstance(features.get(n), Mapping)]
        extra = sorted(set(features) - set(inputs))
        if missing or extra:
            return self._fail(
                len(inputs),
                f"the reference's inputs and statistics disagree (no statistics for {missing}, "
                f"statistics of non-inputs {extra}); {FIX}",
                details,
            )
        return GateResult(self.name, True, len(inputs), THRESHOLD, details)

    def _fail(
        self, observed: int, reason: str, details: Mapping[str, Any] | None = None
    ) -> GateResult:
        return GateResult(
            self.name, False, observed, THRESHOLD, {**(details or {}), "reason": reason}
        )


def _input_width(signature: Mapping[str, Any] | None) -> int | None:
    """The column count of a single (batch, columns) input tensor; None when not that shape."""
    try:
        specs = input_specs(signature)
    except ValueError:
        return None
    if len(specs) != 1:
        return None
    shape = list((specs[0].get("tensor-spec") or {}).get("shape") or [])
    return int(shape[-1]) if len(shape) == 2 and int(shape[-1]) > 0 else None


def _prediction_source(reference: Mapping[str, Any] | None) -> str | None:
    return str(reference.get("source")) if isinstance(reference, Mapping) else None
