"""Evaluation math: task metrics on hand-computed inputs, probability handling, data errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from registry import InvalidEvaluationData, RegistryError
from registry.evaluation import evaluate_frame, input_width, predict, task_metrics
from tests.conftest import make_net


# -- task_metrics -------------------------------------------------------------------------------
def test_binary_metrics_match_hand_computed_values() -> None:
    # threshold 0.5 -> predictions 0, 1, 0, 1: one TP, one FP, one FN, one TN
    got = task_metrics("classification", np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.8]))

    assert got == pytest.approx(
        {
            "accuracy": 0.5,
            "f1": 2 * 1 / (2 * 1 + 1 + 1),
            # positives (0.4, 0.8) outrank negatives (0.1, 0.6) in 3 of 4 pairs
            "roc_auc": 0.75,
            "log_loss": -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.8)) / 4,
        }
    )


def test_multiclass_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])

    got = task_metrics("classification", y, p)

    # argmax 0, 1, 2, 0: per-class F1 2/3, 1, 2/3; every class ranks its own rows first
    assert got == pytest.approx(
        {
            "accuracy": 0.75,
            "f1": (2 / 3 + 1 + 2 / 3) / 3,
            "log_loss": -(math.log(0.7) + math.log(0.8) + math.log(0.6) + math.log(0.2)) / 4,
            "roc_auc": 1.0,
        }
    )


def test_two_probability_columns_are_read_as_binary() -> None:
    got = task_metrics("classification", np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]))

    assert got == pytest.approx(
        {
            "accuracy": 1.0,
            "f1": 1.0,
            "roc_auc": 1.0,
            "log_loss": -math.log(0.8) / 2 - math.log(0.7) / 2,
        }
    )


def test_regression_metrics_match_hand_computed_values() -> None:
    y, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0])
    # errors 0.5, 0, -1, 1: SSE 2.25; SST 5
    got = task_metrics("regression", y, pred)

    assert got == pytest.approx({"rmse": math.sqrt(2.25 / 4), "mae": 2.5 / 4, "r2": 1 - 2.25 / 5})


def test_undefined_metrics_are_left_out_not_nan() -> None:
    one_class = task_metrics("classification", np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))
    constant_target = task_metrics("regression", np.array([2.0, 2.0]), np.array([1.0, 3.0]))
    missing_class = task_metrics(
        "classification", np.array([0, 1, 1]), np.array([[0.6, 0.3, 0.1]] * 3)
    )

    # no positive label and no positive prediction: neither F1 nor AUC exists
    assert set(one_class) == {"accuracy", "log_loss"}
    assert set(constant_target) == {"rmse", "mae"}
    assert "roc_auc" not in missing_class  # class 2 never occurs: one-vs-rest AUC is undefined
    for metrics in (one_class, constant_target, missing_class):
        assert all(math.isfinite(v) for v in metrics.values())


def test_log_loss_clips_certain_wrong_probabilities() -> None:
    got = task_metrics("classification", np.array([1, 0]), np.array([0.0, 1.0]))

    assert math.isfinite(got["log_loss"])
    assert got["log_loss"] == pytest.approx(-math.log(1e-7), rel=1e-3)


@pytest.mark.parametrize(
    ("y", "score", "match"),
    [
        (np.array([0, 2]), np.array([0.1, 0.9]), r"labels range over 0\.\.2"),
        (np.array([0.5, 1.0]), np.array([0.1, 0.9]), "must be integers"),
        (np.array([0, 1, 1]), np.array([0.1, 0.9]), "3 labels for 2 predictions"),
        (np.array([0, 1]), np.array([0.1, np.nan]), "NaN or infinity"),
    ],
)
def test_task_metrics_refuses_labels_that_do_not_fit(y, score, match: str) -> None:
    with pytest.raises(InvalidEvaluationData, match=match):
        task_metrics("classification", y, score)


def test_unknown_task_is_refused() -> None:
    with pytest.raises(InvalidEvaluationData, match="unknown task 'ranking'"):
        task_metrics("ranking", np.array([0, 1]), np.array([0.1, 0.9]))  # type: ignore[arg-type]


# -- predict ------------------------------------------------------------------------------------
class Recorder(torch.nn.Module):
    """Identity that records its batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return x


def test_predict_applies_sigmoid_to_one_column_of_logits() -> None:
    logits = np.array([[-2.0], [0.0], [3.0]], dtype=np.float32)

    got = predict(torch.nn.Identity(), logits, "classification")

    assert got.shape == (3,)
    assert got == pytest.approx(1 / (1 + np.exp(-logits[:, 0])), rel=1e-6)


def test_predict_keeps_one_column_already_in_unit_interval() -> None:
    probabilities = np.array([[0.0], [0.25], [1.0]], dtype=np.float32)

    assert predict(torch.nn.Identity(), probabilities, "classification") == pytest.approx(
        [0.0, 0.25, 1.0]
    )


def test_predict_softmaxes_logit_rows_and_keeps_distribution_rows() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    distributions = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]], dtype=np.float32)

    softmaxed = predict(torch.nn.Identity(), logits, "classification")
    kept = predict(torch.nn.Identity(), distributions, "classification")

    e = np.exp([1.0, 2.0, 3.0])
    assert softmaxed[0] == pytest.approx(e / e.sum(), rel=1e-6)
    assert softmaxed[1] == pytest.approx([1 / 3] * 3)
    assert kept == pytest.approx(distributions, abs=1e-7)


def test_predict_leaves_regression_outputs_alone() -> None:
    x = np.array([[-5.0], [7.5]], dtype=np.float32)

    assert predict(torch.nn.Identity(), x, "regression") == pytest.approx([-5.0, 7.5])


def test_predict_batches_without_a_single_row_batch() -> None:
    model = Recorder()
    x = np.arange(9, dtype=np.float32).reshape(9, 1) / 10

    got = predict(model, x, "classification", batch_size=4)

    assert model.batches == [4, 5]  # 4 + 4 + 1 would hand a pt2 program a batch of one
    assert got == pytest.approx(x[:, 0])


def test_predict_runs_under_inference_mode() -> None:
    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_inference_mode_enabled())
            return x[:, :1]

    predict(Probe(), np.zeros((3, 2), dtype=np.float32), "classification")

    assert seen == [True]


# -- evaluate_frame -----------------------------------------------------------------------------
@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.random((40, 4)), columns=list("abcd"))
    return data.assign(label=(data["a"] + data["b"] > 1).astype(int), city="x")


def test_evaluate_frame_uses_numeric_columns_but_the_label(frame: pd.DataFrame) -> None:
    net = make_net(0)
    x = frame[list("abcd")].to_numpy(dtype=np.float32)
    with torch.inference_mode():
        p = torch.sigmoid(net(torch.from_numpy(x))[:, 0]).numpy()

    got = evaluate_frame(net, frame, "label", "classification")

    assert got == pytest.approx(task_metrics("classification", frame["label"].to_numpy(), p))
    assert set(got) == {"accuracy", "f1", "log_loss", "roc_auc"}


def test_evaluate_frame_takes_named_feature_columns_in_their_order(frame: pd.DataFrame) -> None:
    net = make_net(0)
    shuffled = frame[["d", "label", "c", "b", "a", "city"]]

    named = evaluate_frame(net, shuffled, "label", "classification", list("abcd"))

    assert named == evaluate_frame(net, frame, "label", "classification")


@pytest.mark.parametrize(
    ("edit", "label", "features", "match"),
    [
        (lambda f: f, "churned", None, "label column 'churned' is not in the data"),
        (lambda f: f[["label", "city"]], "label", None, "no numeric feature columns"),
        (lambda f: f, "label", ["a", "zz"], "zz are not in the data"),
        (lambda f: f, "label", ["a", "label"], "also listed as a feature"),
        (lambda f: f, "label", ["a", "city"], "city are not numeric"),
        (lambda f: f.assign(b=f["b"].where(f.index != 3)), "label", None, "b have missing values"),
        (lambda f: f.assign(label=f["label"].where(f.index != 5)), "label", None, "1 missing"),
        (lambda f: f.assign(a=np.inf), "label", None, "infinite"),
        (lambda f: f.head(1), "label", None, "1 row"),
        (lambda f: f.drop(columns="d"), "label", None, "model expects 4 features, the data has 3"),
    ],
)
def test_evaluate_frame_refuses_unusable_data(
    frame: pd.DataFrame, edit, label: str, features: list[str] | None, match: str
) -> None:
    with pytest.raises(InvalidEvaluationData, match=match):
        evaluate_frame(make_net(0), edit(frame), label, "classification", features)


def test_wrong_width_names_the_columns_for_an_exported_program(frame: pd.DataFrame) -> None:
    """torch.export programs (MLflow's pt2) fail a shape guard, not a matmul."""
    example = torch.zeros(3, 4)
    program = torch.export.export(
        make_net(0), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    ).module()

    assert input_width(program) == 4
    with pytest.raises(InvalidEvaluationData) as caught:
        evaluate_frame(program, frame[["a", "b", "c", "label"]], "label", "classification")
    assert "model expects 4 features, the data has 3 columns: a, b, c" in str(caught.value)
    assert isinstance(caught.value, RegistryError)


def test_evaluation_error_is_one_line_and_structured(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidEvaluationData) as caught:
        evaluate_frame(make_net(0), frame, "churned", "classification")

    assert caught.value.column == "churned"
    assert "\n" not in str(caught.value)
