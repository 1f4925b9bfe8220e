"""Great Expectations checks on a batch of feature rows before it may go online.

Each expectation is ``{"type": "expect_...", "kwargs": {...}, "severity": ...}``; only a
failed ``critical`` one makes the batch unfit (GX's own ``success`` is False on warnings
too). GX is imported on first use and runs in an ephemeral context, one per call.

    report = validate_frame(rows, schema_expectations(view) + view.expectations)
    report.success, report.failures, report.warnings
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from features.definitions import FeatureViewDef, check_expectation
from features.errors import InvalidDefinition

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class QualityReport:
    """How a batch fared. ``success`` is False only when a critical expectation failed."""

    rows: int
    success: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "success": self.success,
            "failures": [dict(f) for f in self.failures],
            "warnings": [dict(w) for w in self.warnings],
        }


def schema_expectations(view: FeatureViewDef, join_key: str | None = None) -> list[dict[str, Any]]:
    """What the schema implies: every column present, non-nullable ones (and keys) not null."""
    keys = [join_key] if join_key else []
    out: list[dict[str, Any]] = []
    for column in [*keys, view.timestamp_field, *(f.name for f in view.fields)]:
        out.append(_critical("expect_column_to_exist", column))
    for column in [*keys, view.timestamp_field, *(f.name for f in view.fields if not f.nullable)]:
        out.append(_critical("expect_column_values_to_not_be_null", column))
    return out


def validate_frame(frame: pd.DataFrame, expectations: list[dict[str, Any]]) -> QualityReport:
    """Run the expectations on ``frame``; InvalidDefinition for an expectation GX can't build."""
    for i, spec in enumerate(expectations):
        check_expectation(f"expectations[{i}]", spec)
    if not expectations:
        return QualityReport(rows=len(frame), success=True)

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm bars on stderr would land in CLI output and CI logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("mlcp")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = gx.ExpectationSuite(name="mlcp", expectations=[_build(gx, s) for s in expectations])
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="mlcp", data=batch, suite=context.suites.add(suite))
    )
    result = validation.run(batch_parameters={"dataframe": frame})
    failed = [_failure(r) for r in result.results if not r.success]
    critical = [f for f in failed if f["severity"] == "critical"]
    return QualityReport(
        rows=len(frame),
        success=not critical,
        failures=critical,
        warnings=[f for f in failed if f["severity"] != "critical"],
    )


def _critical(kind: str, column: str) -> dict[str, Any]:
    return {"type": kind, "kwargs": {"column": column}, "severity": "critical"}


def _build(gx: Any, spec: Mapping[str, Any]) -> Any:
    # Compare without underscores or case so acronyms match: expect_column_kl_divergence_...
    wanted = spec["type"].replace("_", "")
    classes = {n.lower(): getattr(gx.expectations, n) for n in dir(gx.expectations)}
    cls = classes.get(wanted)
    if not isinstance(cls, type) or not issubclass(cls, gx.expectations.Expectation):
        raise InvalidDefinition(
            f"expectation {spec['type']}",
            "unknown to Great Expectations; see https://greatexpectations.io/expectations/",
        )
    try:
        return cls(**spec.get("kwargs", {}), severity=spec.get("severity", "critical"))
    except ValueError as exc:  # GX's pydantic ValidationError is a ValueError
        raise InvalidDefinition(
            f"expectation {spec['type']} {spec.get('kwargs')}", str(exc)
        ) from None


def _failure(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: _plain(v) for k, v in config.kwargs.items() if k != "batch_id"}
    out: dict[str, Any] = {
        "expectation": config.type,
        "column": kwargs.get("column"),
        "severity": str(getattr(config.severity, "value", config.severity)),
        "kwargs": kwargs,
    }
    for name, key in (
        ("unexpected_count", "unexpected_count"),
        ("unexpected_percent", "unexpected_percent"),
        ("observed_value", "observed"),
    ):
        if name in result.result:
            out[key] = _plain(result.result[name])
    # GX reports one exception flat, or several keyed by the metric that raised them.
    info = result.exception_info if isinstance(result.exception_info, Mapping) else {}
    raised = [info] if "raised_exception" in info else list(info.values())
    raised = [i for i in raised if isinstance(i, Mapping)]
    errors = [str(i.get("exception_message")) for i in raised if i.get("raised_exception")]
    if errors:
        out["error"] = "; ".join(errors)
    return out


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so reports serialize as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
