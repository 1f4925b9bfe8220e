"""The data-quality gate: Great Expectations expectations on the evaluation and training rows.

GX is imported inside ``check`` (it costs seconds to import) and one ephemeral context
serves every dataset of a call. Each expectation carries a severity: a failed ``warning``
is reported, only a failed ``critical`` blocks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from registry.gates.base import GateContext, GateResult, Severity

if TYPE_CHECKING:
    import pandas as pd

Dataset = Literal["evaluation", "training"]

# Result fields worth carrying into the report; GX adds partial lists and indexes too.
_RESULT_FIELDS = ("observed_value", "element_count", "unexpected_count", "unexpected_percent")


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation, named as in the GX docs, with its arguments and severity.

    ExpectationSpec("expect_column_values_to_be_between", {"column": "x", "min_value": 0})
    """

    type: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity = "critical"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"expect_[a-z0-9_]+", self.type):
            raise ValueError(
                f"expectation type {self.type!r} is not a GX expectation name "
                "(snake case, e.g. expect_column_values_to_not_be_null)"
            )
        if self.severity not in get_args(Severity):
            raise ValueError(
                f"expectation {self.type}: severity must be 'critical' or 'warning', "
                f"not {self.severity!r}"
            )


class DataQualityGate:
    """Runs the expectations on the rows named by ``on``; fails on any critical failure.

    DataQualityGate(
        [ExpectationSpec("expect_column_values_to_not_be_null", {"column": "tenure"})],
        on=("evaluation",),
    )
    """

    name = "data_quality"

    def __init__(
        self,
        expectations: list[ExpectationSpec],
        on: tuple[str, ...] = ("evaluation", "training"),
    ) -> None:
        if not expectations:
            raise ValueError("data-quality gate: give at least one expectation")
        unknown = [d for d in on if d not in get_args(Dataset)]
        if unknown or not on:
            raise ValueError(
                f"data-quality gate: `on` takes 'evaluation' and/or 'training', got {list(on)}"
            )
        self.expectations = list(expectations)
        self.on = tuple(on)

    def check(self, ctx: GateContext) -> GateResult:
        frames: dict[str, pd.DataFrame | None] = {
            "evaluation": ctx.eval_data,
            "training": ctx.training_data,
        }
        datasets: dict[str, Any] = {d: "not available" for d in self.on if frames[d] is None}
        present = {d: frame for d in self.on if (frame := frames[d]) is not None}
        if not present:
            return GateResult.cannot_judge(
                self.name,
                0,
                f"no data to check: no {' or '.join(self.on)} rows were given",
                datasets=datasets,
            )

        failures: list[dict[str, Any]] = []
        for dataset, result in _validate(self.expectations, present).items():
            failed = [r for r in result.results if not r.success]
            datasets[dataset] = {
                "rows": len(present[dataset]),
                "evaluated": len(result.results),
                "failed": len(failed),
            }
            failures += [_failure(dataset, r) for r in failed]

        critical = [f for f in failures if f["severity"] == "critical"]
        warnings = [f for f in failures if f["severity"] != "critical"]
        details: dict[str, Any] = {
            "datasets": datasets,
            "failures": critical,
            "warnings": warnings,
        }
        if critical:
            details["reason"] = "; ".join(_say(f) for f in critical)
        return GateResult(
            gate=self.name,
            passed=not critical,
            observed=len(critical),
            threshold=0,
            details=details,
        )


def _validate(specs: list[ExpectationSpec], frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """GX validation results per dataset, from one ephemeral context."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    expectations = [_expectation(gx, spec) for spec in specs]
    context = gx.get_context(mode="ephemeral")
    # tqdm bars on stderr would land in CLI output and CI logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("mlcp")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="mlcp", expectations=expectations))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="mlcp", data=batch, suite=suite)
    )
    return {name: validation.run(batch_parameters={"dataframe": f}) for name, f in frames.items()}


def _expectation(gx: Any, spec: ExpectationSpec) -> Any:
    # Compare without underscores or case so acronyms work: expect_column_kl_divergence_...
    # is ExpectColumnKLDivergence....
    wanted = spec.type.replace("_", "")
    classes = {n.lower(): getattr(gx.expectations, n) for n in dir(gx.expectations)}
    cls = classes.get(wanted)
    if not isinstance(cls, type) or not issubclass(cls, gx.expectations.Expectation):
        raise ValueError(
            f"unknown expectation type {spec.type!r}; see "
            "https://greatexpectations.io/expectations/ for the names GX knows"
        )
    try:
        return cls(**spec.kwargs, severity=spec.severity)
    except ValueError as exc:  # GX's pydantic ValidationError is a ValueError
        raise ValueError(f"expectation {spec.type} {dict(spec.kwargs)}: {exc}") from None


def _failure(dataset: str, result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: _plain(v) for k, v in config.kwargs.items() if k != "batch_id"}
    out: dict[str, Any] = {
        "dataset": dataset,
        "expectation": config.type,
        "kwargs": kwargs,
        "severity": str(getattr(config.severity, "value", config.severity)),
    }
    out.update({k: _plain(result.result[k]) for k in _RESULT_FIELDS if k in result.result})
    error = _exception_message(result.exception_info)
    if error:
        out["error"] = error
    return out


def _exception_message(info: Any) -> str | None:
    # GX reports one exception flat, or several keyed by the metric that raised them.
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [_exception_message(v) for v in info.values() if isinstance(v, Mapping)]
    return "; ".join(m for m in nested if m) or None


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so details serialize as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _say(failure: Mapping[str, Any]) -> str:
    column = failure["kwargs"].get("column")
    target = f" on {column!r}" if column else ""
    counts = (
        f" ({failure['unexpected_count']} unexpected, {failure['unexpected_percent']:.2f}%)"
        if "unexpected_count" in failure and failure.get("unexpected_percent") is not None
        else (f" (observed {failure['observed_value']})" if "observed_value" in failure else "")
    )
    error = f": {failure['error']}" if "error" in failure else ""
    return f"{failure['dataset']}: {failure['expectation']}{target} failed{counts}{error}"
