"""The drift-reference gate: a version needs training statistics to be watched for drift."""

from __future__ import annotations

import pandas as pd
import pytest

from features.reference import reference_statistics
from registry.gates import DriftReferenceGate, GateContext
from tests.registry.gates.conftest import version


def test_reference_statistics_present_passes() -> None:
    stats = reference_statistics(pd.DataFrame({"tenure": [1, 5, 9], "plan": ["a", "b", "a"]}))

    result = DriftReferenceGate().check(GateContext(candidate=version(reference_stats=stats)))

    assert (result.gate, result.passed, result.observed, result.threshold) == (
        "drift_reference",
        True,
        2,
        ">= 1",
    )
    assert result.details == {"rows": 3, "features": ["plan", "tenure"]}


@pytest.mark.parametrize("stats", [None, {}, {"rows": 3, "features": {}}, {"rows": 3}])
def test_missing_reference_statistics_fails_saying_how_to_register(stats: object) -> None:
    result = DriftReferenceGate().check(GateContext(candidate=version(reference_stats=stats)))

    assert result.blocking
    assert result.observed == 0
    assert "register with --training-data" in result.details["reason"]
