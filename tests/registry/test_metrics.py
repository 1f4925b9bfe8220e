"""The numpy metrics agree with scikit-learn's, on random data, ties and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from registry import metrics as m


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.random(300), 2)  # rounded: plenty of ties
    predicted = (score >= 0.5).astype(np.int64)
    p = np.clip(score, 1e-7, 1 - 1e-7)

    assert m.accuracy(y, predicted) == pytest.approx(skm.accuracy_score(y, predicted))
    assert m.f1(y, predicted) == pytest.approx(skm.f1_score(y, predicted))
    assert m.roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score))
    assert m.log_loss(y, np.column_stack([1 - p, p])) == pytest.approx(
        skm.log_loss(y, p, labels=[0, 1])
    )


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 400)
    raw = rng.random((400, 4))
    probabilities = raw / raw.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)

    assert m.f1(y, predicted, positive=None) == pytest.approx(
        skm.f1_score(y, predicted, average="macro", zero_division=np.nan)
    )
    assert m.log_loss(y, probabilities) == pytest.approx(
        skm.log_loss(y, probabilities, labels=[0, 1, 2, 3])
    )
    assert m.roc_auc_ovr(y, probabilities) == pytest.approx(
        skm.roc_auc_score(y, probabilities, multi_class="ovr", labels=[0, 1, 2, 3])
    )


def test_macro_f1_leaves_out_classes_never_seen_or_predicted() -> None:
    y = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    assert m.f1(y, predicted, positive=None) == pytest.approx(
        skm.f1_score(y, predicted, average="macro", zero_division=np.nan)
    )


def test_f1_without_positives_is_nan() -> None:
    zeros = np.zeros(5, dtype=np.int64)
    assert math.isnan(m.f1(zeros, zeros))


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y, predicted = rng.normal(size=200), rng.normal(size=200)
    assert m.rmse(y, predicted) == pytest.approx(skm.root_mean_squared_error(y, predicted))
    assert m.mae(y, predicted) == pytest.approx(skm.mean_absolute_error(y, predicted))
    assert m.r2(y, predicted) == pytest.approx(skm.r2_score(y, predicted))
    assert math.isnan(m.r2(np.ones(3), predicted[:3]))


def test_auc_of_one_class_is_nan() -> None:
    assert math.isnan(m.roc_auc(np.ones(4, dtype=np.int64), np.arange(4.0)))
