"""Open Inference Protocol bodies: every malformed request is an InvalidInput saying what."""

from __future__ import annotations

import json
import math

import pytest
import torch

from serving.errors import InvalidInput
from serving.protocol import (
    InferenceRequest,
    encode_infer_response,
    infer_response,
    input_tensor,
    parse_body,
    parse_infer,
)
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
        (json.dumps({"inputz": 1}).encode(), "inputs: Field required"),
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


def binary_body(x: torch.Tensor, **top: object) -> tuple[bytes, str]:
    raw = x.numpy().tobytes()
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32",
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [tensor], **top}).encode()
    return header + raw, str(len(header))


def test_binary_inputs_read_the_bytes_after_the_json_header() -> None:
    x = torch.randn(3, 5)
    raw, length = binary_body(x)
    assert torch.equal(input_tensor(parse_infer(raw, length), SPEC), x)


def test_unknown_top_level_fields_are_ignored_but_unknown_input_fields_are_not() -> None:
    raw, length = binary_body(torch.ones(1, 5), model_name="churn", model_version="1")
    assert input_tensor(parse_infer(raw, length), SPEC).shape == (1, 5)
    with pytest.raises(InvalidInput, match=r"inputs.0.colour: Extra inputs"):
        parse_infer(body(colour="red"))


@pytest.mark.parametrize(
    ("cut", "length", "says"),
    [
        (0, "abc", "Inference-Header-Content-Length is 'abc'"),
        (0, "99999", "for a body of"),
        (4, None, "only 56 bytes follow"),
    ],
)
def test_broken_binary_bodies_say_what_is_wrong(cut: int, length: str | None, says: str) -> None:
    raw, header_length = binary_body(torch.ones(3, 5))
    with pytest.raises(InvalidInput, match=says):
        parse_infer(raw[: len(raw) - cut], length or header_length)


def test_bytes_no_input_claims_are_refused() -> None:
    raw, length = binary_body(torch.ones(3, 5))
    with pytest.raises(InvalidInput, match="4 bytes follow the JSON"):
        parse_infer(raw + b"\0\0\0\0", length)


def output(**parameters: object) -> dict[str, object]:
    return {"name": "output", "parameters": parameters}


@pytest.mark.parametrize(
    ("top", "outputs", "binary"),
    [
        ({}, None, False),
        ({"parameters": {"binary_data_output": True}}, None, True),
        ({"parameters": {"binary_data_output": True}}, [output(binary_data=False)], False),
        ({}, [output(binary_data=True)], True),
    ],
)  # fmt: skip
def test_outputs_go_back_binary_when_asked(
    top: dict[str, object], outputs: list[object] | None, binary: bool
) -> None:
    extra: dict[str, object] = dict(top)
    if outputs is not None:
        extra["outputs"] = outputs
    raw, length = binary_body(torch.ones(2, 5), **extra)
    request = parse_infer(raw, length)
    y = torch.tensor([[0.25], [0.75]])
    encoded, header_length = encode_infer_response(SPEC, y, request)
    if not binary:
        assert header_length is None
        assert json.loads(encoded)["outputs"][0]["data"] == [0.25, 0.75]
        return
    assert header_length is not None
    header = json.loads(encoded[:header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert "data" not in header["outputs"][0]
    assert torch.equal(
        torch.frombuffer(bytearray(encoded[header_length:]), dtype=torch.float32), y.reshape(-1)
    )
