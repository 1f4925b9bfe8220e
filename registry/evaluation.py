"""Evaluation: task metrics of a model version on a labelled dataset.

The ``Evaluation`` record is what gates compare: the same dataset fingerprint for a
candidate and its champion means the same rows. The functions here compute the metrics;
they are pure (no store, no MLflow) and import torch and pandas only when called.

    metrics = evaluate_frame(model, frame, label_column="churned", task="classification")
    # {"accuracy": 0.81, "f1": 0.62, "log_loss": 0.41, "roc_auc": 0.86}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from registry.errors import InvalidEvaluationData, InvalidModel, first_line

if TYPE_CHECKING:
    import pandas as pd
    import torch

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = get_args(Task)
# Float32 outputs reach exactly 0 and 1; log loss would be infinite without the clip.
PROBABILITY_EPS = 1e-7
_ROW_SUM_TOLERANCE = 1e-4
_BATCH_SIZE = 4096
# The fix for a program exported with a fixed batch size: serving batches requests.
EXPORT_DYNAMIC_BATCH = (
    "export with a dynamic batch dimension: torch.export.export(model, (x,), "
    "dynamic_shapes=({0: torch.export.Dim.AUTO},)) with x of 2 rows or more, or register "
    "the nn.Module itself and mlcp exports it so"
)


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


def evaluate_frame(
    model: torch.nn.Module,
    frame: pd.DataFrame,
    label_column: str,
    task: Task,
    feature_columns: Sequence[str] | None = None,
) -> dict[str, float]:
    """Task metrics of ``model`` on ``frame``; InvalidEvaluationData when the data can't be used.

    Features are ``feature_columns`` or every numeric column but the label, in frame order.
    """
    check_task(task)
    features, labels, columns = feature_matrix(frame, label_column, feature_columns)
    _check_input_width(model, features, columns)
    return task_metrics(task, labels, predict(model, features, task))


def feature_matrix(
    frame: pd.DataFrame, label_column: str, feature_columns: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(features as float32, labels as float64, feature names)``, or InvalidEvaluationData."""
    from pandas.api.types import is_numeric_dtype

    present = ", ".join(str(c) for c in frame.columns) or "none"
    if label_column not in frame.columns:
        raise InvalidEvaluationData(
            f"the label column {label_column!r} is not in the data; its columns are: {present}",
            column=label_column,
        )
    if feature_columns is None:
        names = [c for c in frame.columns if c != label_column and is_numeric_dtype(frame[c])]
        if not names:
            raise InvalidEvaluationData(
                f"no numeric feature columns besides the label {label_column!r} "
                f"(columns: {present})"
            )
    else:
        names = list(feature_columns)
        _check_named_features(frame, names, label_column, present)
    if len(frame) < 2:
        raise InvalidEvaluationData(f"{len(frame)} row(s); an evaluation needs at least 2")

    label = frame[label_column]
    if not is_numeric_dtype(label):
        raise InvalidEvaluationData(
            f"the label column {label_column!r} is {label.dtype}, not numeric; "
            "encode classes as 0..k-1",
            column=label_column,
        )
    if label.isna().any():
        raise InvalidEvaluationData(
            f"the label column {label_column!r} has {int(label.isna().sum())} missing "
            "value(s); drop or fill those rows",
            column=label_column,
        )
    with_nan = [str(c) for c in names if frame[c].isna().any()]
    if with_nan:
        raise InvalidEvaluationData(
            f"feature column(s) {', '.join(with_nan)} have missing values; drop or fill those rows",
            column=with_nan[0],
        )
    values = frame[names].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all() or np.abs(values).max() > np.finfo(np.float32).max:
        raise InvalidEvaluationData("the features contain infinite or out-of-float32 values")
    return values.astype(np.float32), label.to_numpy(dtype=np.float64), tuple(map(str, names))


def _check_named_features(
    frame: pd.DataFrame, names: list[str], label_column: str, present: str
) -> None:
    from pandas.api.types import is_numeric_dtype

    if not names:
        raise InvalidEvaluationData("no feature columns given")
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise InvalidEvaluationData(
            f"feature column(s) {', '.join(missing)} are not in the data; its columns are: "
            f"{present}",
            column=missing[0],
        )
    if label_column in names:
        raise InvalidEvaluationData(
            f"the label column {label_column!r} is also listed as a feature", column=label_column
        )
    if len(set(names)) != len(names):
        raise InvalidEvaluationData("a feature column is listed twice")
    not_numeric = [c for c in names if not is_numeric_dtype(frame[c])]
    if not_numeric:
        raise InvalidEvaluationData(
            f"feature column(s) {', '.join(not_numeric)} are not numeric; encode them first",
            column=not_numeric[0],
        )


def predict(
    model: torch.nn.Module, features: np.ndarray, task: Task, batch_size: int = _BATCH_SIZE
) -> np.ndarray:
    """The model's outputs on ``features`` (float64), in batches, under inference mode.

    For classification they become probabilities: shape (n,) P(y=1) from one output column
    (sigmoid unless already in [0, 1]), shape (n, k) from k columns (softmax unless the rows
    already are distributions).
    """
    import torch

    check_task(task)
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    outputs = []
    fixed = fixed_batch_size(model)
    with torch.inference_mode():
        for start, stop in _batch_bounds(len(x), fixed or batch_size, exact=fixed is not None):
            out = forward_rows(model, x[start:stop], fixed)
            if not isinstance(out, torch.Tensor):
                raise InvalidModel(
                    type(model).__name__,
                    f"forward() returned {type(out).__name__}, expected one Tensor",
                )
            outputs.append(out.detach().to("cpu", torch.float64))
        scores = torch.cat(outputs) if outputs else torch.empty(0, dtype=torch.float64)
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if task == "classification":
            scores = _probabilities(scores)
    return scores.numpy()


def _batch_bounds(n: int, size: int, exact: bool = False) -> list[tuple[int, int]]:
    # A pt2 program exported from a >= 2-row example may refuse a batch of one row
    # (torch.export specializes sizes 0 and 1), so a trailing single row joins the batch before
    # (not when batches must be exactly ``size``: forward_rows pads the last one).
    edges = [*range(0, n, size), n]
    if not exact and len(edges) > 2 and edges[-1] - edges[-2] == 1:
        del edges[-2]
    return list(itertools.pairwise(edges))


def forward_rows(model: torch.nn.Module, x: torch.Tensor, fixed: int | None = None) -> Any:
    """``model(x)``, also for a program exported with a fixed batch size ``fixed`` (see
    `fixed_batch_size`): fewer rows are padded with copies of the last, and the outputs cut
    back, so such a model can be evaluated even though serving can't batch it."""
    import torch

    n = len(x)
    if fixed is None or n == fixed:
        return model(x)
    if n > fixed:
        return torch.cat([forward_rows(model, x[i : i + fixed], fixed) for i in range(0, n, fixed)])
    return model(torch.cat([x, x[-1:].expand(fixed - n, *x.shape[1:])]))[:n]


def _probabilities(scores: torch.Tensor) -> torch.Tensor:
    import torch

    if scores.numel() == 0:
        return scores
    if scores.ndim == 1:
        in_unit = bool(((scores >= 0) & (scores <= 1)).all())
        return scores if in_unit else torch.sigmoid(scores)
    if scores.ndim != 2:
        raise InvalidModel(
            "the model",
            f"its output has shape {tuple(scores.shape)}; a classifier returns (batch,) "
            "or (batch, classes)",
        )
    distributions = bool(
        (scores >= 0).all() and ((scores.sum(dim=1) - 1).abs() <= _ROW_SUM_TOLERANCE).all()
    )
    return scores if distributions else torch.softmax(scores, dim=1)


def _check_input_width(
    model: torch.nn.Module, features: np.ndarray, columns: Sequence[str]
) -> None:
    """Run two rows first, so a wrong column count fails with a message that says so."""
    import torch

    try:
        with torch.inference_mode():
            forward_rows(
                model, torch.from_numpy(np.ascontiguousarray(features[:2])), fixed_batch_size(model)
            )
    # Eager modules raise RuntimeError on a shape mismatch; torch.export programs (pt2) fail
    # their input guards with AssertionError.
    except (RuntimeError, AssertionError) as exc:
        expected, got = input_width(model), len(columns)
        cause = first_line(exc)
        if expected == got:
            raise InvalidModel("the model", f"forward() failed on 2 rows: {cause}") from exc
        head = (
            f"model expects {expected} features, the data has {got} columns"
            if expected
            else f"the model does not take rows of {got} columns"
        )
        raise InvalidEvaluationData(
            f"{head}: {', '.join(columns)}; give the model's input columns, in order, as the "
            f"feature columns ({cause})"
        ) from exc


def input_width(model: torch.nn.Module) -> int | None:
    """How many features the model takes per row, when it can be read off the model."""
    import torch

    graph = getattr(model, "graph", None)
    if isinstance(graph, torch.fx.Graph):  # a torch.export program: its input's traced shape
        for node in graph.nodes:
            if node.op == "placeholder":
                shape = getattr(node.meta.get("val"), "shape", None)
                if shape is not None and len(shape) == 2 and isinstance(shape[1], int):
                    return int(shape[1])
    for module in model.modules():  # eager: the first module that holds weights
        if any(True for _ in module.parameters(recurse=False)):
            return int(module.in_features) if isinstance(module, torch.nn.Linear) else None
    return None


def fixed_batch_size(model: torch.nn.Module) -> int | None:
    """The batch size a torch.export program was traced with when it is static (it then refuses
    every other size); None for a dynamic batch dimension or an eager module."""
    import torch

    graph = getattr(model, "graph", None)
    if not isinstance(graph, torch.fx.Graph):
        return None
    for node in graph.nodes:
        if node.op == "placeholder":
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is not None and len(shape) >= 1 and isinstance(shape[0], int):
                return int(shape[0])
            return None
    return None


def task_metrics(task: Task, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """Metrics of ``y_score`` against ``y_true``; one undefined on these rows is left out.

    classification, binary: ``y_score`` is P(y=1), shape (n,) (or (n, 2) probabilities),
    labels 0/1 -> accuracy (threshold 0.5), f1, log_loss, roc_auc. Multiclass: (n, k)
    probabilities, labels 0..k-1 -> accuracy, f1 (macro), log_loss, roc_auc (one-vs-rest).
    regression: (n,) predictions -> rmse, mae, r2.
    """
    check_task(task)
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.ndim == 2 and y_score.shape[1] == 1:
        y_score = y_score[:, 0]
    if len(y_true) != len(y_score) or y_true.ndim != 1:
        raise InvalidEvaluationData(
            f"{len(y_true)} labels for {len(y_score)} predictions; give one label per row"
        )
    if len(y_true) == 0:
        raise InvalidEvaluationData("no rows to evaluate on")
    if not np.isfinite(y_score).all():
        raise InvalidEvaluationData("the model's outputs contain NaN or infinity on this data")
    if task == "regression":
        metrics = _regression_metrics(y_true.astype(np.float64), y_score)
    else:
        metrics = _classification_metrics(y_true, y_score)
    return {key: float(value) for key, value in metrics.items() if math.isfinite(value)}


def _classification_metrics(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    from registry import metrics as m

    if y_score.ndim == 2 and y_score.shape[1] == 2:
        y_score = y_score[:, 1]  # two columns of a binary classifier: P(y=1) is the second
    if y_score.ndim == 1:
        y = _class_labels(y_true, 2)
        predicted = (y_score >= 0.5).astype(np.int64)
        p = np.clip(y_score, PROBABILITY_EPS, 1 - PROBABILITY_EPS)
        out = {
            "accuracy": m.accuracy(y, predicted),
            # NaN (then dropped) when there is neither a positive label nor a positive prediction.
            "f1": m.f1(y, predicted),
            "log_loss": m.log_loss(y, np.column_stack([1 - p, p])),
        }
        if len(np.unique(y)) == 2:
            out["roc_auc"] = m.roc_auc(y, y_score)
        return out
    if y_score.ndim != 2:
        raise InvalidEvaluationData(f"predictions of shape {y_score.shape}; expected (n, k)")
    k = y_score.shape[1]
    y = _class_labels(y_true, k)
    clipped = np.clip(y_score, PROBABILITY_EPS, 1)
    probabilities = clipped / clipped.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    out = {
        "accuracy": m.accuracy(y, predicted),
        "f1": m.f1(y, predicted, positive=None),
        "log_loss": m.log_loss(y, probabilities),
    }
    if len(np.unique(y)) == k:  # one-vs-rest AUC needs every class among the labels
        out["roc_auc"] = m.roc_auc_ovr(y, probabilities)
    return out


def _class_labels(y_true: np.ndarray, k: int) -> np.ndarray:
    if y_true.dtype.kind not in "biuf" or not np.all(np.mod(y_true, 1) == 0):
        raise InvalidEvaluationData(f"classification labels must be integers 0..{k - 1}")
    y = y_true.astype(np.int64)
    if y.min() < 0 or y.max() >= k:
        shape = "a P(y=1) column" if k == 2 else f"{k} probability columns"
        raise InvalidEvaluationData(
            f"labels range over {int(y.min())}..{int(y.max())} but the model gives {shape}; "
            f"classification labels must be 0..{k - 1}"
        )
    return y


def _regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from registry import metrics as m

    if y_pred.ndim != 1:
        raise InvalidEvaluationData(
            f"the model gives {y_pred.shape[1]} outputs per row; regression needs one"
        )
    out = {"rmse": m.rmse(y_true, y_pred), "mae": m.mae(y_true, y_pred)}
    if len(y_true) >= 2 and np.ptp(y_true) > 0:  # R² is undefined for a constant target
        out["r2"] = m.r2(y_true, y_pred)
    return out


def check_task(task: str) -> None:
    if task not in TASKS:
        raise InvalidEvaluationData(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
