"""The schema gate: the candidate's input signature against a declared one.

Until the feature-service schema is recorded with each version, the policy declares the
tensors the serving side will send, and this gate holds every candidate to them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from registry.evaluation import EXPORT_DYNAMIC_BATCH
from registry.gates.base import GateContext, GateResult

_FIXED_BATCH = "a fixed batch size"


@dataclass(frozen=True)
class TensorSpecDecl:
    """One declared input tensor; -1 in ``shape`` accepts any size on that axis.

    TensorSpecDecl("float32", (-1, 4), name="input")
    """

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None


class SchemaCompatibilityGate:
    """Passes when the model's MLflow input signature matches the declared tensors.

    SchemaCompatibilityGate([TensorSpecDecl("float32", (-1, 4))])
    """

    name = "schema"

    def __init__(self, inputs: list[TensorSpecDecl]) -> None:
        if not inputs:
            raise ValueError("schema gate: declare at least one input tensor")
        self.inputs = list(inputs)

    def check(self, ctx: GateContext) -> GateResult:
        declared = [_describe(d.dtype, d.shape, d.name) for d in self.inputs]
        try:
            specs = input_specs(ctx.candidate.signature)
        except ValueError as exc:
            return GateResult.cannot_judge(
                self.name, "; ".join(declared), f"{ctx.candidate.ref}: {exc}", declared=declared
            )
        mismatches = _mismatches(specs, self.inputs)
        found = [_describe_spec(spec) for spec in specs]
        details: dict[str, Any] = {"mismatches": mismatches, "model": found, "declared": declared}
        if mismatches:
            details["reason"] = "; ".join(mismatches)
        if any(_FIXED_BATCH in m for m in mismatches):
            details["fix"] = EXPORT_DYNAMIC_BATCH
        return GateResult(
            gate=self.name,
            passed=not mismatches,
            observed="; ".join(found),
            threshold="; ".join(declared),
            details=details,
        )


def input_specs(signature: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    raw = (signature or {}).get("inputs")
    if not raw:
        raise ValueError("the model has no input signature; register it with an input example")
    try:
        # MLflow stores the inputs as a JSON string; accept the parsed list too.
        specs = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except json.JSONDecodeError as exc:
        raise ValueError(f"the input signature is not valid JSON: {exc}") from None
    if not isinstance(specs, list) or not all(isinstance(s, Mapping) for s in specs):
        raise ValueError("the input signature is not a list of input specs")
    return specs


def _mismatches(specs: Sequence[Mapping[str, Any]], decls: Sequence[TensorSpecDecl]) -> list[str]:
    out = []
    if len(specs) != len(decls):
        out.append(f"the model takes {len(specs)} input(s), expected {len(decls)}")
    for i, (spec, decl) in enumerate(zip(specs, decls, strict=False)):
        where = f"input {i}"
        if spec.get("type") != "tensor":
            out.append(
                f"{where}: a {spec.get('type')} column {spec.get('name')!r}, expected a tensor"
            )
            continue
        tensor = spec.get("tensor-spec") or {}
        dtype, shape = tensor.get("dtype"), tuple(tensor.get("shape") or ())
        if decl.name is not None and spec.get("name") != decl.name:
            out.append(f"{where}: named {spec.get('name')!r}, expected {decl.name!r}")
        if _dtype(str(dtype)) != _dtype(decl.dtype):
            out.append(f"{where}: dtype {dtype}, expected {decl.dtype}")
        if shape and decl.shape and decl.shape[0] == -1 and shape[0] != -1:
            out.append(
                f"{where}: {_FIXED_BATCH} of {shape[0]} (the model was exported with a static "
                "batch dimension), expected any batch size"
            )
            shape = (-1, *shape[1:])  # said once; the other axes are judged below
        if not _shape_ok(shape, decl.shape):
            out.append(f"{where}: shape {_shape(shape)}, expected {_shape(decl.shape)}")
    return out


def _shape_ok(model: tuple[int, ...], declared: tuple[int, ...]) -> bool:
    if len(model) != len(declared):
        return False
    # A declared -1 takes whatever the model fixes (but on the batch axis: see _mismatches).
    # A model's -1 (a free axis, usually the batch) must be declared -1 too: a fixed size
    # there means policy and model disagree about how the server batches.
    return all(d == -1 or m == d for m, d in zip(model, declared, strict=True))


def _dtype(name: str) -> str:
    try:
        return np.dtype(name).name
    except TypeError:
        return name


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _describe(dtype: str, shape: Sequence[int], name: str | None) -> str:
    return f"{name + ': ' if name else ''}{dtype}{_shape(shape)}"


def _describe_spec(spec: Mapping[str, Any]) -> str:
    if spec.get("type") != "tensor":
        return f"{spec.get('name')}: {spec.get('type')} column"
    tensor = spec.get("tensor-spec") or {}
    return _describe(str(tensor.get("dtype")), tensor.get("shape") or (), spec.get("name"))
