"""Evaluation: task metrics of a model version on a labelled dataset.

The ``Evaluation`` record is what gates compare: the same dataset fingerprint for a
candidate and its champion means the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Evaluation:
    """Metrics of ``name@version`` on the dataset with ``dataset_fingerprint``."""

    name: str
    version: int
    task: Task
    dataset_fingerprint: str
    dataset_rows: int
    label_column: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    dataset_source: str | None = None
    mlflow_run_id: str | None = None
