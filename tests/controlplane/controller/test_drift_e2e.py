"""Drift end to end: two real `mlcp serve` replicas answering entity requests from Feast, the
controller watching, load running throughout.

churn@1 was trained on last season's customers, churn@2 (the champion) on this season's.
Unchanged traffic over many analysis windows triggers nothing; then a new materialization
brings last season's values back under load, the controller confirms drift on churn@2's
inputs and rolls back to churn@1, both replicas serve it, and every request is answered.

SQLite only: the windows, analyses and rollbacks travel the same paths as in
test_rollback_e2e.py, which runs them on PostgreSQL too; drift adds statistics, not storage.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.policy import Policy
from controlplane.settings import Settings
from registry import RegistrationRequest
from tests.controlplane.controller.cluster import (
    MLCP,
    WIDTH,
    Cluster,
    Load,
    Process,
    good_model,
    policy_yaml,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "drifting"
CUSTOMERS = 2000
FEATURES = ["tenure", "charges", "calls", "usage", "contract"]
NOW = pd.Timestamp("2026-03-01T00:00:00Z")
LATER = NOW + pd.Timedelta(days=1)
DEFS = """
from features.definitions import Definitions, EntityDef, FeatureServiceDef, FeatureViewDef, Field

DEFINITIONS = Definitions(
    entities=[EntityDef("customer", join_key="customer_id")],
    views=[FeatureViewDef(
        name="customer_stats", version=1, entity="customer",
        fields=[Field(n, "float32") for n in ("tenure", "charges", "calls", "usage", "contract")],
        source="customer_stats.parquet", ttl_s=90 * 86400,
    )],
    services=[FeatureServiceDef("churn_features", 1, ["customer_stats@1"])],
)
"""


def season(shift: float, seed: int) -> pd.DataFrame:
    """The customers' feature values; ``shift`` moves charges and usage by that many
    standard deviations (last season's customers paid more and used more)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, CUSTOMERS),
            "charges": rng.normal(65 + 20 * shift, 20, CUSTOMERS),
            "calls": rng.poisson(1.5, CUSTOMERS),
            "usage": rng.normal(0.3 + 0.1 * shift, 0.1, CUSTOMERS),
            "contract": rng.choice([1, 12, 24], CUSTOMERS),
        }
    ).astype(np.float32)
    return frame.assign(customer_id=np.arange(CUSTOMERS, dtype=np.int64))


@dataclass
class World:
    cluster: Cluster
    cp: ControlPlane
    home: Path
    replicas: list[Process]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def converged(self, champion: int) -> bool:
        return all(self.cluster.serves(r, NAME, champion, None) for r in self.replicas)

    def entries(self, action: str) -> list[audit.AuditEntry]:
        with self.cp.sessions() as session:
            return audit.entries(session, subject=f"{NAME}@*", action=action)

    def drift_analyses(self, version: int) -> list[dict]:
        from controlplane.controller.records import ControllerStore

        rows = ControllerStore(self.cp.sessions, self.cp.rollouts).analyses(NAME, limit=1000)
        return [a for a in rows if a["version"] == version and a["drift"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("drift")
    values: dict[str, str] = {"home": str(home / ".mlcp"), "actor": "ci"}
    env = {**os.environ, **{f"MLCP_{k.upper()}": v for k, v in values.items()}}
    cp = ControlPlane(Settings(**values))  # type: ignore[arg-type]
    cluster = Cluster(home, env)
    try:
        # This season's values online.
        source = season(0.0, seed=1).assign(event_timestamp=NOW)
        source.to_parquet(home / "customer_stats.parquet", index=False)
        (home / "features.py").write_text(DEFS)
        cp.features.apply(home / "features.py", "ci")
        cp.features.materialize(
            "customer_stats@1", (NOW - pd.Timedelta(days=1)).to_pydatetime(),
            (NOW + pd.Timedelta(hours=1)).to_pydatetime(), "ci",
        )  # fmt: skip
        # v1 trained on last season's customers, v2 on this season's (what is online).
        for seed, frame in enumerate((season(1.0, seed=1), source), start=1):
            training = frame[FEATURES].assign(churned=frame["customer_id"] % 2)
            x = frame[FEATURES].to_numpy(np.float32)[:8]
            cp.registry.register(
                RegistrationRequest(
                    name=NAME, model=good_model(seed), input_example=x,
                    feature_service="churn_features@1", training_frame=training,
                    label="churned",
                )
            )  # fmt: skip
        drift = {"action": "rollback", "target_run_length": 100000, "min_rows": 20}
        cp.policies.set(NAME, Policy.from_yaml(policy_yaml(drift=drift)), "admin")
        for version in (1, 2):
            assert cp.promotions.promote(f"{NAME}@{version}", "ci").outcome == "promoted"
        replicas = [cluster.serve("replica-a"), cluster.serve("replica-b")]
        for replica in replicas:
            cluster.wait_ready(replica)
        world = World(cluster, cp, home, replicas)
        wait_until(lambda: world.converged(2), what="churn@2 served by both replicas")
        cluster.controller()
        yield world
    finally:
        cluster.stop()
        cp.close()


def test_unchanged_traffic_then_a_shifted_materialization_rolls_back_on_drift(
    world: World,
) -> None:
    assert len(FEATURES) == WIDTH
    with Load(world.urls, NAME, entities=CUSTOMERS) as load:
        # Unchanged traffic: many judged windows, no drift decision.
        wait_until(
            lambda: len([a for a in world.drift_analyses(2) if _judged(a)]) >= 40,
            timeout_s=300, what="40 analysis windows of unchanged traffic",
        )  # fmt: skip
        assert not world.entries("model.rollback")
        assert not world.entries("controller.alert")
        assert not any(a["drift"]["confirmed"] for a in world.drift_analyses(2))

        # Last season's values come back: a new materialization, under load.
        shifted = season(1.0, seed=1).assign(event_timestamp=LATER)
        both = pd.concat([pd.read_parquet(world.home / "customer_stats.parquet"), shifted])
        both.to_parquet(world.home / "customer_stats.parquet", index=False)
        world.cp.features.materialize(
            "customer_stats@1", (LATER - timedelta(hours=1)).to_pydatetime(),
            (LATER + timedelta(hours=1)).to_pydatetime(), "ci",
        )  # fmt: skip
        [rollback] = wait_until(lambda: world.entries("model.rollback"), timeout_s=300,
                                what="the drift rollback")  # fmt: skip
        wait_until(lambda: world.converged(1), what="both replicas back on churn@1")
        settled = load.count()
        wait_until(lambda: load.count() > settled + 100, what="traffic after the rollback")

    assert not load.failures, load.failures[:5]
    assert load.count() == load.sent
    assert {a.status for a in load.answers} == {200}, [a.error for a in load.answers][:5]
    # After both replicas switched, only requests already in flight (one per load thread at
    # most) may still be answered by the version that took them.
    late = [a for a in load.answers[settled:] if a.version != "1"]
    assert len(late) <= load.threads, late
    assert load.answers[-1].version == "1"
    evidence = rollback.evidence or {}
    assert rollback.subject == f"{NAME}@2"
    assert evidence["rolled_back_to"] == 1
    assert "drift" in evidence["failed_checks"]
    drifting = set(evidence["drift"]["drifting"])
    assert drifting
    assert drifting <= {"charges", "usage", "prediction"}
    assert world.cp.registry.get(f"{NAME}@1").state == "production"

    # What a person reads: `mlcp drift NAME@2`, in the terminal and as JSON.
    shown = _mlcp(world, "drift", f"{NAME}@2", "--windows", "60")
    assert "drift confirmed in" in shown
    assert any(tick in shown for tick in "▁▂▃▄▅▆▇█")
    report = json.loads(_mlcp(world, "drift", f"{NAME}@2", "--windows", "60", "--json"))
    assert report["conclusion"]["confirmed"]
    charges = next(d for d in report["detectors"] if d["name"] == "charges")
    assert max(p for p in charges["series"]["psi"] if p is not None) > 0.2
    # ... and the same over the control API.
    from fastapi.testclient import TestClient

    from controlplane.api.app import create_app

    token = world.cp.tokens.create("viewer", "viewer", "test")[1]
    with TestClient(create_app(world.cp)) as client:
        response = client.get(
            f"/v1/models/{NAME}/versions/2/drift", params={"windows": 60},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["conclusion"] == report["conclusion"]


def _judged(analysis: dict) -> bool:
    return any(d["status"] in ("ok", "drift") for d in analysis["drift"]["detectors"])


def _mlcp(world: World, *argv: str) -> str:
    done = subprocess.run(
        [MLCP, *argv], cwd=world.home, env=world.cluster.env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_rolled_back_version_sees_traffic_like_its_reference(world: World) -> None:
    """After the rollback churn@1 answers last season's traffic, which is what it was trained
    on: its detectors judge windows and confirm nothing."""
    with Load(world.urls, NAME, entities=CUSTOMERS):
        wait_until(
            lambda: len([a for a in world.drift_analyses(1) if _judged(a)]) >= 10,
            timeout_s=300, what="churn@1's analyses",
        )  # fmt: skip
    assert not any(a["drift"]["confirmed"] for a in world.drift_analyses(1))
    assert len(world.entries("model.rollback")) == 1
