"""The drift-reference gate: a version needs reference statistics covering exactly its inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.reference import reference_statistics
from registry.gates import DriftReferenceGate, GateContext
from tests.registry.gates.conftest import tensor_signature, version

FRAME = pd.DataFrame(
    {
        "customer_id": np.arange(50),
        "tenure": np.arange(50) % 7,
        "spend": np.linspace(0, 1, 50),
        "calls": np.arange(50) % 3,
        "score": np.linspace(5, 9, 50),
        "churned": np.arange(50) % 2,
    }
)
INPUTS = ["tenure", "spend", "calls", "score"]  # the version's signature takes 4 columns


def test_a_reference_covering_exactly_the_inputs_passes() -> None:
    stats = reference_statistics(FRAME, columns=INPUTS)

    result = DriftReferenceGate().check(GateContext(candidate=version(reference_stats=stats)))

    assert (result.gate, result.passed, result.observed) == ("drift_reference", True, 4)
    assert result.details["features"] == INPUTS
    assert result.details["model_inputs"] == 4


def test_a_reference_over_every_column_of_the_training_file_fails() -> None:
    stats = reference_statistics(FRAME)  # key and label included: 6 columns, 4 inputs

    result = DriftReferenceGate().check(GateContext(candidate=version(reference_stats=stats)))

    assert result.blocking
    assert result.observed == 6
    assert "takes 4 inputs" in result.details["reason"]
    assert "--feature-service" in result.details["reason"]


def test_inputs_without_statistics_fail() -> None:
    stats = reference_statistics(FRAME, columns=INPUTS)
    stats["inputs"] = ["tenure", "spend", "calls", "nosuch"]
    candidate = version(reference_stats=stats, signature=tensor_signature(("float32", [-1, 4])))

    result = DriftReferenceGate().check(GateContext(candidate=candidate))

    assert result.blocking
    assert "nosuch" in result.details["reason"]


@pytest.mark.parametrize("stats", [None, {}, {"rows": 3, "features": {}}, {"rows": 3}])
def test_missing_reference_statistics_fails_saying_how_to_register(stats: object) -> None:
    result = DriftReferenceGate().check(GateContext(candidate=version(reference_stats=stats)))

    assert result.blocking
    assert result.observed == 0
    assert "register with --training-data" in result.details["reason"]
