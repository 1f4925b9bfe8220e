"""The data-quality gate on real Great Expectations: severities, datasets, reporting."""

from __future__ import annotations

import pandas as pd
import pytest

from registry.gates import (
    DataQualityGate,
    ExpectationSpec,
    GateContext,
    GateResult,
    run_gates,
)
from tests.registry.gates.conftest import version

NOT_NULL = ExpectationSpec("expect_column_values_to_not_be_null", {"column": "tenure"})
CHARGES_IN_RANGE = ExpectationSpec(
    "expect_column_values_to_be_between",
    {"column": "charges", "min_value": 0, "max_value": 100},
    severity="warning",
)
ENOUGH_ROWS = ExpectationSpec("expect_table_row_count_to_be_between", {"min_value": 2})

CLEAN = pd.DataFrame({"tenure": [1, 5, 9, 12], "charges": [10.0, 20.0, 30.0, 40.0]})
# charges out of range (a warning); tenure complete.
ODD_CHARGES = CLEAN.assign(charges=[10.0, 20.0, 150.0, 40.0])
# a null tenure (critical).
NULL_TENURE = CLEAN.assign(tenure=[1, None, 9, 12])


def gate(*specs: ExpectationSpec, on: tuple[str, ...] = ("evaluation", "training")):
    return DataQualityGate(list(specs) or [NOT_NULL, CHARGES_IN_RANGE, ENOUGH_ROWS], on=on)


def ctx(eval_data: pd.DataFrame | None, training_data: pd.DataFrame | None) -> GateContext:
    return GateContext(candidate=version(), eval_data=eval_data, training_data=training_data)


@pytest.fixture(scope="module")
def mixed() -> GateResult:
    """Evaluation rows with a warning failure, training rows with a critical one."""
    return gate().check(ctx(ODD_CHARGES, NULL_TENURE))


def test_clean_data_passes_on_both_datasets() -> None:
    result = gate().check(ctx(CLEAN, CLEAN))

    assert (result.gate, result.passed, result.observed, result.threshold) == (
        "data_quality",
        True,
        0,
        0,
    )
    assert result.details["datasets"] == {
        "evaluation": {"rows": 4, "evaluated": 3, "failed": 0},
        "training": {"rows": 4, "evaluated": 3, "failed": 0},
    }
    assert result.details["failures"] == result.details["warnings"] == []


def test_critical_failure_blocks_and_is_described(mixed: GateResult) -> None:
    assert mixed.blocking
    assert mixed.observed == 1
    assert mixed.details["failures"] == [
        {
            "dataset": "training",
            "expectation": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "tenure"},
            "severity": "critical",
            "element_count": 4,
            "unexpected_count": 1,
            "unexpected_percent": 25.0,
        }
    ]
    assert (
        "training: expect_column_values_to_not_be_null on 'tenure' failed"
        in (mixed.details["reason"])
    )


def test_warning_failures_are_listed_even_when_blocked(mixed: GateResult) -> None:
    (warning,) = mixed.details["warnings"]

    assert (warning["dataset"], warning["severity"], warning["unexpected_count"]) == (
        "evaluation",
        "warning",
        1,
    )
    assert warning["kwargs"] == {"column": "charges", "min_value": 0.0, "max_value": 100.0}


def test_warning_only_failure_passes_with_warnings() -> None:
    report = run_gates([gate()], ctx(ODD_CHARGES, CLEAN))

    (result,) = report.results
    assert report.passed
    assert result.passed
    assert result.severity == "critical"
    assert [w["expectation"] for w in result.details["warnings"]] == [
        "expect_column_values_to_be_between"
    ]
    assert report.warnings == [result]


def test_missing_dataset_is_recorded_as_not_available() -> None:
    result = gate().check(ctx(CLEAN, None))

    assert result.passed
    assert result.details["datasets"]["training"] == "not available"
    assert result.details["datasets"]["evaluation"]["rows"] == 4


def test_only_the_datasets_named_by_on_are_checked() -> None:
    result = gate(on=("evaluation",)).check(ctx(CLEAN, NULL_TENURE))

    assert result.passed
    assert list(result.details["datasets"]) == ["evaluation"]


def test_no_data_at_all_fails() -> None:
    result = gate().check(ctx(None, None))

    assert result.blocking
    assert result.details["reason"].startswith("no data to check")
    assert result.details["datasets"] == {
        "evaluation": "not available",
        "training": "not available",
    }


def test_expectation_on_a_missing_column_fails_with_the_gx_error() -> None:
    spec = ExpectationSpec("expect_column_values_to_not_be_null", {"column": "plan"})

    result = gate(spec).check(ctx(CLEAN, None))

    assert result.blocking
    (failure,) = result.details["failures"]
    assert 'The column "plan" in BatchData does not exist' in failure["error"]


def test_unknown_expectation_type_raises_naming_it() -> None:
    spec = ExpectationSpec("expect_column_values_to_be_purple", {"column": "tenure"})

    with pytest.raises(ValueError, match="unknown expectation type 'expect_column_values_to_be_pu"):
        gate(spec).check(ctx(CLEAN, None))


def test_bad_expectation_arguments_raise_naming_the_expectation() -> None:
    spec = ExpectationSpec("expect_column_values_to_not_be_null", {"colum": "tenure"})

    with pytest.raises(ValueError, match="expectation expect_column_values_to_not_be_null"):
        gate(spec).check(ctx(CLEAN, None))


def test_expectation_spec_refuses_a_name_that_is_not_an_expectation() -> None:
    with pytest.raises(ValueError, match="not a GX expectation name"):
        ExpectationSpec("ColumnValuesNotNull", {"column": "tenure"})


def test_gate_refuses_an_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="'evaluation' and/or 'training'"):
        DataQualityGate([NOT_NULL], on=("validation",))
