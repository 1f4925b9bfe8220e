from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from features.errors import InvalidDefinition
from features.quality import schema_expectations, validate_frame
from tests.features.conftest import churn_definitions, source_frame


def between(column: str, lo: float, hi: float, severity: str = "critical") -> dict:
    return {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": column, "min_value": lo, "max_value": hi},
        "severity": severity,
    }


def test_no_expectations_pass_without_importing_gx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "great_expectations", None)  # an import would fail
    report = validate_frame(pd.DataFrame({"a": [1, 2]}), [])
    assert report.success
    assert report.rows == 2
    assert report.failures == report.warnings == []


def test_schema_expectations_keep_non_nullable_fields_and_keys_not_null() -> None:
    view = churn_definitions().views[0]
    specs = schema_expectations(view, join_key="user_id")
    not_null = {s["kwargs"]["column"] for s in specs if s["type"].endswith("not_be_null")}
    exist = {s["kwargs"]["column"] for s in specs if s["type"] == "expect_column_to_exist"}
    assert not_null == {"user_id", "event_timestamp", "tenure"}
    assert exist == {"user_id", "event_timestamp", "tenure", "spend", "visits"}
    assert {s["severity"] for s in specs} == {"critical"}


def test_good_rows_pass() -> None:
    view = churn_definitions().views[1]
    checks = schema_expectations(view, "user_id") + view.expectations
    report = validate_frame(source_frame(), checks)
    assert report.success, report.failures
    assert report.rows == 50


def test_critical_failures_are_reported_with_counts() -> None:
    frame = source_frame()
    frame.loc[:2, "tenure"] = None
    frame.loc[0, "spend"] = -5.0
    view = churn_definitions().views[1]
    report = validate_frame(frame, schema_expectations(view, "user_id") + view.expectations)
    assert not report.success
    by_column = {f["column"]: f for f in report.failures}
    assert by_column["tenure"]["expectation"] == "expect_column_values_to_not_be_null"
    assert by_column["tenure"]["unexpected_count"] == 3
    assert by_column["spend"]["unexpected_count"] == 1
    assert by_column["spend"]["severity"] == "critical"
    assert json.loads(json.dumps(report.to_dict())) == report.to_dict()


def test_warning_failures_do_not_fail_the_batch() -> None:
    report = validate_frame(source_frame(), [between("spend", 0, 10, severity="warning")])
    assert report.success
    assert report.failures == []
    (warning,) = report.warnings
    assert warning["severity"] == "warning"
    assert warning["unexpected_percent"] == pytest.approx(100.0)


def test_a_missing_column_fails_its_expectation() -> None:
    report = validate_frame(
        source_frame().drop(columns=["spend"]),
        [{"type": "expect_column_to_exist", "kwargs": {"column": "spend"}}],
    )
    assert not report.success
    assert report.failures[0]["column"] == "spend"


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "expect_the_moon", "kwargs": {}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 0}},
        {"type": "expect_column_values_to_not_be_null", "severity": "fatal"},
        {"kind": "expect_column_to_exist"},
    ],
)
def test_unusable_expectations_are_invalid_definitions(spec: dict) -> None:
    with pytest.raises(InvalidDefinition):
        validate_frame(source_frame(), [spec])
