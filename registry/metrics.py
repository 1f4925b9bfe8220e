"""Task metrics in numpy: what the evaluation records, without importing scikit-learn (about
a second of every `mlcp evaluate`). Each agrees with scikit-learn's function of the same name
(tests/registry/test_metrics.py checks it on random data, ties and edge cases included).

    accuracy(y, predicted); f1(y, predicted, classes); log_loss(y, probabilities)
    roc_auc(y, score); roc_auc_ovr(y, probabilities); rmse, mae, r2
"""

from __future__ import annotations

import numpy as np


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(y == predicted))


def f1(y: np.ndarray, predicted: np.ndarray, positive: int | None = 1) -> float:
    """Binary F1 of class ``positive``; with ``positive=None``, the macro average over the
    classes in ``y`` or ``predicted``, leaving out classes with no label and no prediction
    (scikit-learn's ``zero_division=np.nan``). NaN when nothing is left."""
    classes = [positive] if positive is not None else np.union1d(y, predicted)
    scores = []
    for c in classes:
        tp = np.sum((y == c) & (predicted == c))
        denominator = np.sum(y == c) + np.sum(predicted == c)
        if denominator:
            scores.append(2.0 * tp / denominator)
    return float(np.mean(scores)) if scores else float("nan")


def log_loss(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-probability of the true class; rows of ``probabilities`` (n, k) are
    normalized and clipped to float64's epsilon, as scikit-learn does."""
    p = probabilities / probabilities.sum(axis=1, keepdims=True)
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary ``y`` (0/1): the Mann-Whitney statistic, tied
    scores counting one half."""
    positive = y == 1
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_ovr(y: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest AUC, the unweighted mean over classes (scikit-learn's macro average)."""
    per_class = [
        roc_auc((y == c).astype(np.int64), probabilities[:, c])
        for c in range(probabilities.shape[1])
    ]
    return float(np.mean(per_class))


def rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - predicted) ** 2)))


def mae(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(y - predicted)))


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((y - predicted) ** 2) / total)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks
