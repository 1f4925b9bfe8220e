"""Hand-made versions and evaluations: gates judge plain records, no stores needed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from registry.evaluation import Evaluation
from registry.lineage import ModelVersion

DATASET = "d" * 64


def tensor_signature(*inputs: tuple[str, list[int]], name: str = "input") -> dict[str, Any]:
    """An MLflow signature dict: inputs as a JSON string, as MLflow writes it."""
    specs = [
        {"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape}, "name": name}
        for dtype, shape in inputs
    ]
    outputs = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}]
    return {"inputs": json.dumps(specs), "outputs": json.dumps(outputs), "params": None}


def version(v: int = 2, name: str = "churn", **overrides: Any) -> ModelVersion:
    fields: dict[str, Any] = {
        "name": name,
        "version": v,
        "state": "registered",
        "run_id": f"run{v}",
        "model_uri": f"models:/{name}/{v}",
        "source_uri": f"models:/m-{v}",
        "artifact_sha256": "a" * 64,
        "model_format": "pt2",
        "signature": tensor_signature(("float32", [-1, 4])),
        "registered_by": "alice",
        "registered_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    return ModelVersion(**(fields | overrides))


def evaluation(metrics: Mapping[str, float], v: int = 2, dataset: str = DATASET) -> Evaluation:
    return Evaluation(
        name="churn",
        version=v,
        task="classification",
        dataset_fingerprint=dataset,
        dataset_rows=500,
        label_column="churned",
        metrics=metrics,
    )
