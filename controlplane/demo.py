"""The demo job behind ``make demo``: train a small churn model and register it with lineage.

Everything runs on the embedded default (SQLite and local files under ./.mlcp). The data,
the seed and so the weights are fixed: running it again reuses the version it registered
(same idempotency key, same content) instead of piling up duplicates.

Imported only by ``mlcp demo``, so torch at module level costs the rest of the CLI nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

    from controlplane.context import ControlPlane
    from registry import ModelVersion

FEATURES = ("tenure_months", "monthly_charges", "support_calls", "usage_drop", "contract_len")
SEED = 7


@dataclass(frozen=True)
class DemoResult:
    version: ModelVersion
    train_path: Path
    max_abs_diff_plain_mlflow: float


def make_churn_data(rows: int = 4000, seed: int = SEED) -> pd.DataFrame:
    """A synthetic churn table: five numeric features and a 0/1 label."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.integers(1, 72, rows),
            rng.normal(65, 20, rows).clip(10, 150),
            rng.poisson(1.5, rows),
            rng.beta(2, 5, rows),
            rng.choice([1, 12, 24], rows),
        ]
    ).astype(np.float32)
    logit = -0.04 * x[:, 0] + 0.02 * x[:, 1] + 0.5 * x[:, 2] + 3.0 * x[:, 3] - 0.05 * x[:, 4] - 1.2
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(x, columns=list(FEATURES))
    frame["churned"] = label
    return frame


def train(
    frame: pd.DataFrame, epochs: int = 30, hidden: int = 16, lr: float = 0.02
) -> tuple[torch.nn.Module, dict[str, float], np.ndarray]:
    """A two-layer MLP behind a standardization layer that carries the training statistics."""
    torch.manual_seed(SEED)
    x = frame[list(FEATURES)].to_numpy(np.float32)
    y = frame["churned"].to_numpy(np.float32)
    split = int(len(x) * 0.8)
    mean, std = x[:split].mean(0), x[:split].std(0) + 1e-6
    net = torch.nn.Sequential(
        Standardize(mean, std),
        torch.nn.Linear(len(FEATURES), hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 1),
        torch.nn.Sigmoid(),
    )
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x[:split]), torch.from_numpy(y[:split]).unsqueeze(1)
    for _ in range(epochs):
        for i in range(0, split, 256):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy(net(xt[i : i + 256]), yt[i : i + 256])
            loss.backward()
            opt.step()
    net.eval()
    with torch.inference_mode():
        p = net(torch.from_numpy(x[split:])).squeeze(1).numpy()
    metrics = {
        "accuracy": float(((p > 0.5) == (y[split:] > 0.5)).mean()),
        "auc": _auc(y[split:], p),
    }
    return net, metrics, x[:8]


def run_demo(cp: ControlPlane, progress: Callable[[str], None] = lambda _m: None) -> DemoResult:
    from features import fingerprint_frame
    from registry import RegistrationRequest, TrainingData
    from registry.code_version import detect_code_version

    say = progress
    frame = make_churn_data()
    train_path = cp.settings.home / "demo" / "churn_train.parquet"
    train_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(train_path, index=False)
    fp = fingerprint_frame(frame)
    say(f"training the churn model on {fp.rows} rows (data sha256 {fp.sha256[:12]})")
    net, metrics, example = train(frame)
    params = {"epochs": "30", "hidden": "16", "lr": "0.02", "seed": str(SEED)}
    version = cp.registry.register(
        RegistrationRequest(
            name="churn",
            model=net,
            input_example=example,
            params=params,
            metrics=metrics,
            training_data=TrainingData(
                fingerprint=fp.sha256,
                rows=fp.rows,
                source=str(train_path),
                columns=fp.columns,
            ),
            code_version=detect_code_version(),
            registered_by=cp.settings.actor,
            idempotency_key=f"demo-{fp.sha256[:16]}",
            description="mlcp demo: churn classifier on synthetic data",
        ),
        progress=say,
    )
    say(f"loading {version.model_uri} with plain mlflow.pytorch.load_model")
    diff = _plain_mlflow_diff(cp, version.model_uri, net, example)
    return DemoResult(version=version, train_path=train_path, max_abs_diff_plain_mlflow=diff)


def _plain_mlflow_diff(cp: ControlPlane, uri: str, net: torch.nn.Module, x: np.ndarray) -> float:
    """Load through MLflow alone, as a user without mlcp would, and compare outputs."""
    import mlflow

    mlflow.set_tracking_uri(cp.settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(cp.settings.mlflow_registry_uri)
    loaded = mlflow.pytorch.load_model(uri)
    with torch.inference_mode():
        return float((loaded(torch.from_numpy(x)) - net(torch.from_numpy(x))).abs().max())


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties averaged)."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class Standardize(torch.nn.Module):
    """(x - mean) / std with the training statistics as buffers, exported with the model."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
