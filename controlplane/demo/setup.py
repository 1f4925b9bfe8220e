"""The demo's set-up: features, data, the first models, the policy, the first promotion.

Features are defined, checked and materialized in Feast; training and evaluation sets come
from Feast's point-in-time join; a baseline and a weak churn model are registered with
their lineage (feature service pinned), evaluated on held-out rows and promoted through
every gate: the baseline becomes champion, the weak one is refused. Everything runs under
./.mlcp (SQLite and local files). The data, the seed and so the weights are fixed: running
it again reuses what it registered instead of piling up duplicates.

Imported only by ``mlcp demo``, so torch at module level costs the rest of the CLI nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

    from controlplane.context import ControlPlane
    from controlplane.promotion import PromotionResult
    from features.training import TrainingSet
    from registry import ModelVersion

FEATURES = ("tenure_months", "monthly_charges", "support_calls", "usage_drop", "contract_len")
LABEL = "churned"
SEED = 7
SERVICE = "churn_features@1"
FEATURES_AT = "2026-01-01T00:00:00+00:00"  # when the feature values were computed
LABELS_AT = "2026-02-01T00:00:00+00:00"  # when churn was observed (the training rows' time)

# What `mlcp features apply --file` reads: one entity, one view version, one service version.
FEATURE_DEFINITIONS = """
from features.definitions import Definitions, EntityDef, FeatureServiceDef, FeatureViewDef, Field

DEFINITIONS = Definitions(
    entities=[EntityDef("customer", join_key="customer_id")],
    views=[
        FeatureViewDef(
            name="customer_stats",
            version=1,
            entity="customer",
            fields=[
                Field("tenure_months", "float32", nullable=False),
                Field("monthly_charges", "float32", nullable=False),
                Field("support_calls", "float32"),
                Field("usage_drop", "float32"),
                Field("contract_len", "float32"),
            ],
            source="customer_stats.parquet",
            ttl_s=90 * 86400,
            expectations=[
                {"type": "expect_column_values_to_be_between",
                 "kwargs": {"column": "usage_drop", "min_value": 0, "max_value": 1}},
            ],
        )
    ],
    services=[FeatureServiceDef("churn_features", 1, ["customer_stats@1"])],
)
"""

# Every gate mlcp has, on the demo's model. The weak model clears the floors but falls more
# than the allowed margin behind the champion on the same held-out rows. The canary, SLO and
# drift sections drive the rollback controller through the demo's scenes (one analysis a
# second, so the story plays in minutes, not hours). The latency budget is an absolute
# ceiling, set loose because the demo's gates share two cores with its own replicas and
# traffic; the live SLO then compares the canary with the champion side by side, which a
# busy machine slows alike.
DEMO_POLICY = """
gates:
  metrics:
    - {metric: roc_auc, min: 0.6}
  champion:
    - {metric: roc_auc, direction: higher, max_drop: 0.01}
    - {metric: log_loss, direction: lower, max_relative_drop: 0.05}
  data_quality:
    expectations:
      - {type: expect_column_values_to_not_be_null, kwargs: {column: tenure_months}}
      - type: expect_column_values_to_be_between
        kwargs: {column: monthly_charges, min_value: 10, max_value: 150}
      - type: expect_column_values_to_be_between
        kwargs: {column: support_calls, max_value: 6}
        severity: warning
  schema:
    inputs: [{dtype: float32, shape: [-1, 5]}]
  latency: {batch_sizes: [1, 32], p99_ms: 1000}
  drift_reference: true
canary: {steps: [20, 50], interval_s: INTERVAL, min_requests: 10, success_windows: 2,
         failure_limit: 0, inconclusive_limit: 60}
slo: {p99_ms: 500, max_error_rate: 0.02, max_canary_p99_ratio: 2, min_p99_increase_ms: 5,
      breach_windows: 2, min_requests: 20}
rollback: {max_per_hour: 5}
drift: {action: rollback, target_run_length: 100000, min_psi: 0.05, min_rows: 30}
"""


def demo_policy(interval_s: float = 1.0) -> str:
    """The demo's policy, analysing every ``interval_s`` seconds."""
    return DEMO_POLICY.replace("INTERVAL", f"{interval_s:g}")


@dataclass(frozen=True)
class DemoResult:
    version: ModelVersion
    train_path: Path
    max_abs_diff_plain_mlflow: float
    promotions: list[PromotionResult] = field(default_factory=list)
    train_set: TrainingSet | None = None
    eval_path: Path | None = None


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
    frame[LABEL] = label
    return frame


def train(
    frame: pd.DataFrame, epochs: int = 30, hidden: int = 16, lr: float = 0.02
) -> tuple[torch.nn.Module, dict[str, float], np.ndarray]:
    """A two-layer MLP behind a standardization layer that carries the training statistics."""
    from registry.evaluation import task_metrics

    torch.manual_seed(SEED)
    x = frame[list(FEATURES)].to_numpy(np.float32)
    y = frame[LABEL].to_numpy(np.float32)
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
    metrics = task_metrics("classification", y[split:].astype(np.int64), p)
    return net, metrics, x[:8]


def run_demo(
    cp: ControlPlane,
    progress: Callable[[str], None] = lambda _m: None,
    interval_s: float = 1.0,
) -> DemoResult:
    """Features into Feast, training and evaluation sets out of it, then a baseline and a
    weak churn model registered, evaluated and promoted: the baseline becomes champion, the
    weak one is refused."""
    import pandas as pd

    from controlplane.policy import Policy

    home = cp.settings.home / "demo"
    home.mkdir(parents=True, exist_ok=True)
    train_raw = make_churn_data().assign(customer_id=np.arange(4000))
    eval_raw = make_churn_data(rows=1500, seed=SEED + 1).assign(customer_id=np.arange(4000, 5500))
    both = pd.concat([train_raw, eval_raw], ignore_index=True)

    # Features: the source table, the definitions, a checked materialization.
    source = both[["customer_id", *FEATURES]].assign(event_timestamp=pd.Timestamp(FEATURES_AT))
    source.to_parquet(home / "customer_stats.parquet", index=False)
    (home / "features.py").write_text(FEATURE_DEFINITIONS)
    cp.features.apply(home / "features.py", cp.settings.actor)
    window = (pd.Timestamp(FEATURES_AT) - pd.Timedelta(days=1), pd.Timestamp(LABELS_AT))
    cp.features.materialize(
        "customer_stats@1", window[0].to_pydatetime(), window[1].to_pydatetime(),
        cp.settings.actor, progress,
    )  # fmt: skip

    # Training and evaluation rows from Feast's point-in-time join.
    train_path, eval_path = home / "churn_train.parquet", home / "churn_eval.parquet"
    train_set = _feast_rows(cp, train_raw, train_path, progress)
    _feast_rows(cp, eval_raw, eval_path, progress)

    good, example = register(cp, train_set, train_path, BASELINE, progress)
    weak, _ = register(cp, train_set, train_path, WEAK, progress)
    cp.policies.set("churn", Policy.from_yaml(demo_policy(interval_s)), cp.settings.actor)

    reports = []
    for version in (good, weak):
        evaluate(cp, version, eval_path, progress)
        if cp.promotions.snapshot("churn").champion == version.version:
            progress(f"{version.ref} is already the champion (an earlier demo run promoted it)")
            continue
        if version.state != "registered":
            progress(f"{version.ref} was judged by an earlier demo run ({version.state})")
            continue
        progress(f"promoting {version.ref} through its gates")
        reports.append(cp.promotions.promote(version.ref, cp.settings.actor))

    progress(f"loading {good.model_uri} with plain mlflow.pytorch.load_model")
    net = _plain_mlflow_model(cp, good.model_uri)
    with torch.inference_mode():
        reference = cp.registry.backend.load_version(good)(torch.from_numpy(example))
        diff = float((net(torch.from_numpy(example)) - reference).abs().max())
    return DemoResult(
        version=cp.registry.get(good.ref),
        train_path=train_path,
        max_abs_diff_plain_mlflow=diff,
        promotions=reports,
        train_set=train_set,
        eval_path=eval_path,
    )


def evaluate(
    cp: ControlPlane, version: ModelVersion, eval_path: Path, progress: Callable[[str], None]
) -> None:
    """The version's (and its champion's) metrics on the held-out rows, for the gates."""
    progress(f"evaluating {version.ref} on the held-out rows")
    cp.evaluations.evaluate(
        version.ref, eval_path, LABEL, "classification", feature_columns=list(FEATURES)
    )


def _feast_rows(
    cp: ControlPlane, raw: pd.DataFrame, path: Path, progress: Callable[[str], None]
) -> TrainingSet:
    """Labels joined point-in-time with the features Feast served at the label's time."""
    import pandas as pd

    entities = raw[["customer_id", LABEL]].assign(event_timestamp=pd.Timestamp(LABELS_AT))
    progress(f"building {path.name} from {SERVICE} ({len(entities)} entity rows)")
    ts = cp.features.training_set(SERVICE, entities, labels=(LABEL,))
    ts.frame.to_parquet(path, index=False)
    return ts


@dataclass(frozen=True)
class Flavour:
    """How one of the demo's models is trained, and what it stands for in the story."""

    name: str
    epochs: int
    hidden: int
    burn: int = 0  # a square matrix this wide multiplied on every batch: a latency regression
    story: str = ""


BASELINE = Flavour("baseline", epochs=8, hidden=8, story="the first champion")
WEAK = Flavour("weak", epochs=1, hidden=2, story="refused by the gates")
BETTER = Flavour("better", epochs=30, hidden=16, story="walks its canary to production")
SLOWER = Flavour("slower", epochs=30, hidden=16, burn=800, story="as good, ~25 ms slower per batch")


def register(
    cp: ControlPlane,
    training: TrainingSet,
    path: Path,
    flavour: Flavour,
    progress: Callable[[str], None],
    run: str = "",
    name: str = "churn",
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
) -> tuple[ModelVersion, np.ndarray]:
    """Train ``flavour`` on the training set and register it with its lineage (as a version
    of ``name``, the trained net passed through ``wrap`` first). ``run`` makes the
    idempotency key unique per demo run (the same data and seed give the same weights)."""
    from registry import RegistrationRequest
    from registry.code_version import detect_code_version

    fp = training.fingerprint
    progress(f"training the {flavour.name} churn model on {fp.rows} rows (data {fp.sha256[:12]})")
    net, metrics, example = train(training.frame, epochs=flavour.epochs, hidden=flavour.hidden)
    if flavour.burn:
        net = LatencyRegression(net, flavour.burn)
    if wrap is not None:
        net = wrap(net)
    params = {"epochs": str(flavour.epochs), "hidden": str(flavour.hidden), "lr": "0.02",
              "seed": str(SEED), "burn": str(flavour.burn)}  # fmt: skip
    version = cp.registry.register(
        RegistrationRequest(
            name=name,
            model=net,
            input_example=example,
            params=params,
            metrics=metrics,
            feature_service=SERVICE,
            # The registration rules fingerprint these rows and keep the statistics of the
            # service's five features (not the key, timestamp or label) and of the outputs.
            training_frame=training.frame,
            training_source=str(path),
            label=LABEL,
            code_version=detect_code_version(),
            registered_by=cp.settings.actor,
            idempotency_key=f"demo-{flavour.name}-{fp.sha256[:16]}{run}",
            description=f"mlcp demo: {flavour.name} churn classifier ({flavour.story})",
        ),
        progress=progress,
    )
    return version, example


def _plain_mlflow_model(cp: ControlPlane, uri: str) -> torch.nn.Module:
    """Load through MLflow alone, as a user without mlcp would."""
    import mlflow

    mlflow.set_tracking_uri(cp.settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(cp.settings.mlflow_registry_uri)
    return mlflow.pytorch.load_model(uri)


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


class LatencyRegression(torch.nn.Module):
    """A model's answers, computed the slow way: it also multiplies a ``size`` x ``size``
    matrix by itself on every batch (and adds zero times the result). The kind of regression
    an offline latency budget lets through and live traffic shows."""

    def __init__(self, inner: torch.nn.Module, size: int) -> None:
        super().__init__()
        self.inner = inner
        generator = torch.Generator().manual_seed(SEED)
        self.weight = torch.nn.Parameter(torch.randn(size, size, generator=generator) / size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        burn = (self.weight @ self.weight @ self.weight).sum() * 0.0
        return self.inner(x) + burn
