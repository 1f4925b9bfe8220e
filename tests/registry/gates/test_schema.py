"""The schema gate: the model's MLflow input signature against the declared tensors."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from registry.gates import GateContext, GateResult, SchemaCompatibilityGate, TensorSpecDecl
from tests.registry.gates.conftest import tensor_signature, version


def check(signature: Mapping[str, object], *decls: TensorSpecDecl) -> GateResult:
    return SchemaCompatibilityGate(list(decls)).check(
        GateContext(candidate=version(signature=signature))
    )


def test_matching_signature_passes() -> None:
    result = check(tensor_signature(("float32", [-1, 4])), TensorSpecDecl("float32", (-1, 4)))

    assert (result.gate, result.passed) == ("schema", True)
    assert result.details["mismatches"] == []
    assert result.observed == "input: float32(-1, 4)"


def test_declared_any_size_matches_a_fixed_model_axis() -> None:
    result = check(tensor_signature(("float32", [-1, 4])), TensorSpecDecl("float32", (-1, -1)))

    assert result.passed


def test_dtype_mismatch_fails_naming_both_dtypes() -> None:
    result = check(tensor_signature(("float64", [-1, 4])), TensorSpecDecl("float32", (-1, 4)))

    assert result.blocking
    assert result.details["mismatches"] == ["input 0: dtype float64, expected float32"]


def test_feature_count_mismatch_fails() -> None:
    result = check(tensor_signature(("float32", [-1, 5])), TensorSpecDecl("float32", (-1, 4)))

    assert result.details["mismatches"] == ["input 0: shape (-1, 5), expected (-1, 4)"]


def test_model_batch_axis_must_be_declared_any() -> None:
    result = check(tensor_signature(("float32", [-1, 4])), TensorSpecDecl("float32", (32, 4)))

    assert result.details["mismatches"] == ["input 0: shape (-1, 4), expected (32, 4)"]


def test_a_fixed_batch_size_fails_saying_how_to_export() -> None:
    result = check(tensor_signature(("float32", [8, 5])), TensorSpecDecl("float32", (-1, 4)))

    assert result.blocking
    assert result.details["mismatches"] == [
        "input 0: a fixed batch size of 8 (the model was exported with a static batch "
        "dimension), expected any batch size",
        "input 0: shape (-1, 5), expected (-1, 4)",
    ]
    assert "dynamic_shapes=({0: torch.export.Dim.AUTO},)" in result.details["fix"]


def test_rank_mismatch_fails() -> None:
    result = check(tensor_signature(("float32", [-1, 4])), TensorSpecDecl("float32", (-1, 4, 1)))

    assert not result.passed


def test_input_count_mismatch_fails() -> None:
    result = check(
        tensor_signature(("float32", [-1, 4])),
        TensorSpecDecl("float32", (-1, 4)),
        TensorSpecDecl("int64", (-1,)),
    )

    assert result.details["mismatches"] == ["the model takes 1 input(s), expected 2"]


def test_declared_name_must_match() -> None:
    result = check(
        tensor_signature(("float32", [-1, 4])), TensorSpecDecl("float32", (-1, 4), name="x")
    )

    assert result.details["mismatches"] == ["input 0: named 'input', expected 'x'"]


def test_column_signature_is_not_a_tensor() -> None:
    signature = {"inputs": '[{"type": "double", "name": "tenure", "required": true}]'}

    result = check(signature, TensorSpecDecl("float64", (-1, 1)))

    assert result.details["mismatches"] == ["input 0: a double column 'tenure', expected a tensor"]


@pytest.mark.parametrize("signature", [{}, {"inputs": None}, {"inputs": "not json"}])
def test_missing_or_broken_signature_fails(signature: dict[str, object]) -> None:
    result = check(signature, TensorSpecDecl("float32", (-1, 4)))

    assert result.blocking
    assert result.details["reason"].startswith("churn@2: ")
