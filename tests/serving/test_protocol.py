"""Open Inference Protocol bodies: every malformed request is an InvalidInput saying what."""

from __future__ import annotations

import json
import math

import pytest
import torch

from serving.errors import InvalidInput
from serving.protocol import InferenceRequest, infer_response, input_tensor, parse_body
from tests.serving.conftest import spec_for

SPEC = spec_for("churn", 1)


def body(**overrides: object) -> bytes:
    tensor = {"name": "input", "shape": [2, 5], "datatype": "FP32", "data": list(range(10))}
    tensor.update(overrides)
    return json.dumps({"id": "r1", "inputs": [tensor]}).encode()


def tensor_of(raw: bytes) -> torch.Tensor:
    return input_tensor(parse_body(InferenceRequest, raw), SPEC)


def test_flat_and_nested_data_give_the_same_tensor() -> None:
    flat = tensor_of(body())
    nested = tensor_of(body(data=[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]))
    assert flat.shape == (2, 5)
    assert flat.dtype == torch.float32
    assert torch.equal(flat, nested)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"inputs": []}).encode(), "inputs"),
        (body(shape=[2, 4]), "expected [-1, 5]"),
        (body(shape=[3, 5]), "needs 15 values, data has 10"),
        (body(datatype="INT64"), "takes FP32"),
        (body(name="x"), "unknown input 'x'"),
        (body(data=["a"] * 10), "data is not FP32"),
        (body(shape=[0, 5], data=[]), "no rows"),
        (json.dumps({"inputs": [{"name": "input"}]}).encode(), "inputs.0.shape"),
        (json.dumps({"inputz": 1}).encode(), "inputz"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(raw: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=says.replace("[", r"\[").replace("]", r"\]")):
        tensor_of(raw)


def test_nan_is_refused_unless_the_model_allows_it() -> None:
    # JSON has no NaN literal, but Python's json (and many clients) write one.
    raw = body(data=[math.nan, *range(9)])
    with pytest.raises(InvalidInput, match="NaN or infinity"):
        tensor_of(raw)


def test_response_carries_model_version_id_and_outputs() -> None:
    out = infer_response(SPEC, torch.tensor([[0.25], [0.75]]), "r1")
    assert out == {
        "model_name": "churn",
        "model_version": "1",
        "id": "r1",
        "outputs": [{"name": "output", "shape": [2, 1], "datatype": "FP32", "data": [0.25, 0.75]}],
    }
