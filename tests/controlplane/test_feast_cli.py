"""Feast's own tools on mlcp's feature repo: after `mlcp features apply` and a materialization,
the `feast` CLI lists the versioned views and a plain `feast.FeatureStore` reads a service."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from controlplane.context import ControlPlane
from controlplane.settings import Settings
from tests.controlplane.test_serving_adapters import DAY, DEFS

BIN = Path(sys.executable).parent


def test_feast_cli_and_a_plain_feature_store_open_mlcp_s_repo(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "defs.py").write_text(DEFS)
    pd.DataFrame(
        {"user_id": np.arange(3, dtype=np.int64), "spend": np.float32([10.0, 20.0, 30.0]),
         "visits": np.arange(3, dtype=np.int64) * 2, "event_timestamp": [DAY] * 3}
    ).to_parquet(tmp_path / "user_stats.parquet", index=False)  # fmt: skip
    env = {
        **os.environ,
        "MLCP_HOME": str(settings.home),
        "MLCP_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLCP_ARTIFACT_ROOT": settings.artifact_root,
    }
    applied = subprocess.run(
        [BIN / "mlcp", "features", "apply", "--file", tmp_path / "defs.py"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert applied.returncode == 0, applied.stderr
    repo = settings.home / "feast"
    assert (repo / "feature_store.yaml").is_file()
    with ControlPlane(settings) as cp:
        cp.features.materialize("user_stats@1", DAY - timedelta(days=1), DAY + timedelta(1), "t")

    listed = subprocess.run(
        [BIN / "feast", "-c", repo, "feature-views", "list"],
        env={k: v for k, v in env.items() if not k.startswith("MLCP_")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert "user_stats__v1" in listed.stdout

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    online = store.get_online_features(
        features=store.get_feature_service("user_features__v1"),
        entity_rows=[{"user_id": 1}, {"user_id": 2}],
    ).to_dict()
    assert online["spend"] == [20.0, 30.0]


def test_the_yaml_follows_the_settings(settings: Settings) -> None:
    from features.feast_repo import FeastRepo

    repo = FeastRepo(settings.home / "feast", "first", "registry.db", "online.db")
    repo.store  # noqa: B018 - opening the store writes the file
    path = settings.home / "feast" / "feature_store.yaml"
    assert "project: first" in path.read_text()
    repo.close()
    moved = FeastRepo(settings.home / "feast", "second", "registry.db", "redis://127.0.0.1:1")
    moved.store  # noqa: B018
    text = path.read_text()
    assert "project: second" in text
    assert "type: redis" in text
    moved.close()
