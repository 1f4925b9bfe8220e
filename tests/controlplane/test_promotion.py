"""Promotion end to end on the embedded stores: real MLflow, real Great Expectations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.errors import InvalidTransition, NoPolicy
from controlplane.policy import Policy
from features import fingerprint_frame, reference_statistics
from registry import RegistrationRequest, TrainingData

W = np.array([1.0, -2.0, 0.5, 1.5], dtype=np.float32)
FEATURES = ["a", "b", "c", "d"]


def linear(weights: np.ndarray) -> torch.nn.Module:
    net = torch.nn.Linear(4, 1)
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(weights).unsqueeze(0))
        net.bias.zero_()
    return net.eval()


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 4), dtype=np.float32) - 0.5
    noisy = x @ W + rng.normal(0, 0.3, rows)
    return pd.DataFrame(x, columns=FEATURES).assign(label=(noisy > 0).astype(np.int64))


class World:
    """A model with a training set, an evaluation set, and helpers to register and judge."""

    def __init__(self, cp: ControlPlane, name: str, root: Path) -> None:
        self.cp, self.name, self.root = cp, name, root
        self.train_path, self.eval_path = root / "train.parquet", root / "eval.parquet"
        self.train = frame(400, 1)
        self.train.to_parquet(self.train_path, index=False)
        frame(300, 2).to_parquet(self.eval_path, index=False)

    def register(self, weights: np.ndarray) -> int:
        fp = fingerprint_frame(self.train)
        version = self.cp.registry.register(
            RegistrationRequest(
                name=self.name,
                model=linear(weights),
                input_example=self.train[FEATURES].to_numpy(np.float32)[:4],
                training_data=TrainingData(fp.sha256, fp.rows, str(self.train_path), fp.columns),
                reference_stats=reference_statistics(self.train, exclude=("label",)),
                registered_by="alice",
            )
        )
        return version.version

    def evaluate(self, version: int) -> None:
        self.cp.evaluations.evaluate(
            f"{self.name}@{version}", self.eval_path, "label", "classification"
        )

    def policy(self, text: str) -> None:
        self.cp.policies.set(self.name, Policy.from_yaml(text), "admin")

    def state(self, version: int) -> str:
        return self.cp.registry.get(f"{self.name}@{version}").state

    def aliases(self) -> dict[str, int]:
        """Read through MLflow itself, as a user of MLflow would."""
        s = self.cp.settings
        client = MlflowClient(s.mlflow_tracking_uri, s.mlflow_registry_uri)
        return {k: int(v) for k, v in client.get_registered_model(self.name).aliases.items()}


FLOORS = """
gates:
  metrics: [{metric: roc_auc, min: 0.7}]
  champion: [{metric: roc_auc, direction: higher, max_drop: 0.01}]
  drift_reference: true
"""


@pytest.fixture
def world(cp: ControlPlane, model_name: str, tmp_path: Path) -> World:
    return World(cp, model_name, tmp_path)


def test_promotion_needs_a_policy(world: World) -> None:
    v1 = world.register(W)
    with pytest.raises(NoPolicy):
        world.cp.promotions.promote(f"{world.name}@{v1}", "ci")


def test_first_model_passes_on_floors_alone(world: World) -> None:
    world.policy(FLOORS)
    v1 = world.register(W)
    world.evaluate(v1)
    result = world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    assert result.outcome == "promoted", result.to_dict()
    champion_gate = next(r for r in result.report.results if r.gate == "champion:roc_auc")
    assert champion_gate.passed
    assert champion_gate.details["first_model"] is True
    assert world.state(v1) == "production"
    assert world.aliases() == {"champion": v1}
    with world.cp.sessions() as s:
        actions = [e.action for e in audit.entries(s, subject=f"{world.name}@{v1}")]
        assert actions[:2] == ["model.promote", "model.gates"]
        assert audit.verify(s).ok


def test_ci_script_branches_on_exit_code_when_candidate_is_worse(world: World) -> None:
    world.policy(FLOORS)
    v1 = world.register(W)
    world.evaluate(v1)
    assert world.cp.promotions.promote(f"{world.name}@{v1}", "ci").outcome == "promoted"
    worse = world.register(W + np.array([0.0, 1.6, 0.0, -1.0], dtype=np.float32))
    world.evaluate(worse)  # evaluates the champion on the same rows too

    s = world.cp.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {"MLCP_HOME": str(s.home), "MLCP_MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
            "MLCP_ARTIFACT_ROOT": s.artifact_root, "MLCP_ACTOR": "ci"}  # fmt: skip
    mlcp = str(Path(sys.executable).parent / "mlcp")
    done = subprocess.run(
        [mlcp, "promote", f"{world.name}@{worse}", "--to", "production", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "refused"
    assert report["failures"] == ["champion:roc_auc"]
    failed = next(g for g in report["gates"] if g["gate"] == "champion:roc_auc")
    assert failed["observed"] > 0.01  # the drop, against a 0.01 threshold
    assert world.state(worse) == "rejected"
    assert world.aliases() == {"champion": v1}


DATA_CHECK = """
gates:
  data_quality:
    datasets: [training]
    expectations:
      - type: expect_column_values_to_be_between
        kwargs: {column: a, min_value: 0.0, max_value: 0.5}
        severity: SEVERITY
"""


def test_a_program_exported_with_a_fixed_batch_is_refused_by_the_schema_gate(
    world: World,
) -> None:
    x = world.train[FEATURES].to_numpy(np.float32)[:4]
    static = torch.export.export(linear(W), (torch.from_numpy(x),)).module()  # batch 4 only
    fp = fingerprint_frame(world.train)
    version = world.cp.registry.register(
        RegistrationRequest(
            name=world.name,
            model=static,
            input_example=x,
            training_data=TrainingData(fp.sha256, fp.rows, str(world.train_path), fp.columns),
            reference_stats=reference_statistics(world.train, exclude=("label",)),
        )
    )
    world.evaluate(version.version)  # evaluated in padded batches of 4
    world.policy("gates:\n  schema: {inputs: [{dtype: float32, shape: [-1, 4]}]}\n")

    result = world.cp.promotions.promote(version.ref, "ci")

    assert result.outcome == "refused"
    assert result.reason.startswith("schema: observed float32(4, 4), needs float32(-1, 4)")
    assert "dynamic_shapes=({0: torch.export.Dim.AUTO},)" in result.reason


def test_critical_data_failure_refuses(world: World) -> None:
    world.policy(DATA_CHECK.replace("SEVERITY", "critical"))
    v1 = world.register(W)
    result = world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    assert result.outcome == "refused"
    assert [r.gate for r in result.report.failures] == ["data_quality"]
    assert world.state(v1) == "rejected"


def test_warning_only_data_failure_promotes_and_is_reported(world: World) -> None:
    world.policy(DATA_CHECK.replace("SEVERITY", "warning"))
    v1 = world.register(W)
    result = world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    assert result.outcome == "promoted"
    assert result.to_dict()["warnings"] == ["data_quality"]


def test_approval_by_a_second_person(world: World) -> None:
    world.policy("approval: {required: true}\ngates: {drift_reference: true}\n")
    v1 = world.register(W)
    pending = world.cp.promotions.promote(f"{world.name}@{v1}", "alice")
    assert pending.outcome == "pending_approval"
    assert world.state(v1) == "awaiting_approval"
    assert "champion" not in world.aliases()
    with pytest.raises(InvalidTransition, match="who asked for it"):
        world.cp.promotions.approve(f"{world.name}@{v1}", "alice")
    done = world.cp.promotions.approve(f"{world.name}@{v1}", "bob", "looks good")
    assert done.outcome == "promoted"
    assert world.aliases() == {"champion": v1}

    v2 = world.register(W * 2)
    world.cp.promotions.promote(f"{world.name}@{v2}", "alice")
    assert (
        world.cp.promotions.reject(f"{world.name}@{v2}", "bob", "not this week").state == "rejected"
    )
    with pytest.raises(InvalidTransition):
        world.cp.promotions.approve(f"{world.name}@{v2}", "bob")


def test_canary_sets_challenger_and_weight(world: World) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1, v2 = world.register(W), world.register(W * 2)
    world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    result = world.cp.promotions.promote(f"{world.name}@{v2}", "ci", canary_percent=10)
    assert result.outcome == "canary"
    assert world.state(v2) == "canary"
    assert world.aliases() == {"champion": v1, "challenger": v2}
    snap = world.cp.promotions.snapshot(world.name)
    assert (snap.champion, snap.challenger) == (v1, v2)

    # the canary goes on to production: the old champion retires, the challenger alias goes
    assert world.cp.promotions.promote(f"{world.name}@{v2}", "ci").outcome == "promoted"
    assert world.aliases() == {"champion": v2}
    assert world.state(v1) == "retired"


def test_champion_changing_while_gates_run_is_a_conflict(world: World, monkeypatch) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1, v2 = world.register(W), world.register(W * 2)
    service = world.cp.promotions
    real_context = service._context

    def racing(*args: Any) -> Any:
        monkeypatch.setattr(service, "_context", real_context)
        assert service.promote(f"{world.name}@{v2}", "other-ci").outcome == "promoted"
        return real_context(*args)

    monkeypatch.setattr(service, "_context", racing)
    result = service.promote(f"{world.name}@{v1}", "ci")
    assert result.outcome == "conflict"
    assert "changed while this ran" in result.reason
    assert world.aliases() == {"champion": v2}
    assert world.state(v1) == "registered"


def test_already_champion_is_bad_input(world: World) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1 = world.register(W)
    world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    with pytest.raises(InvalidTransition):
        world.cp.promotions.promote(f"{world.name}@{v1}", "ci")


def test_alias_moved_by_hand_is_reported_and_corrected(world: World) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1, v2, v3 = world.register(W), world.register(W * 2), world.register(W * 3)
    world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    s = world.cp.settings
    MlflowClient(s.mlflow_tracking_uri, s.mlflow_registry_uri).set_registered_model_alias(
        world.name, "champion", str(v2)
    )
    world.cp.promotions.promote(f"{world.name}@{v3}", "ci")
    assert world.aliases() == {"champion": v3}
    with world.cp.sessions() as session:
        (row,) = audit.entries(session, subject=f"{world.name}@{v3}", action="model.promote")
    assert row.evidence is not None
    assert row.evidence["aliases_moved_outside_mlcp"] == {
        "found": {"champion": v2},
        "expected": {"champion": v1},
    }


# -- shadow ---------------------------------------------------------------------------------------
def test_shadow_then_unshadow_moves_only_the_shadow_and_is_audited(world: World) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1, v2 = world.register(W), world.register(W * 2)
    promotions = world.cp.promotions
    promotions.promote(f"{world.name}@{v1}", "ci")

    snap = promotions.shadow(f"{world.name}@{v2}", "alice", "compare on live traffic")
    assert (snap.champion, snap.challenger, snap.shadow, snap.revision) == (v1, None, v2, 2)
    assert promotions.snapshot(world.name) == snap
    assert world.aliases() == {"champion": v1}  # a shadow answers nobody: no alias
    assert world.state(v2) == "registered"

    off = promotions.unshadow(world.name, "bob", "seen enough")
    assert (off.shadow, off.revision) == (None, 3)
    with world.cp.sessions() as s:
        shadowed, unshadowed = (
            audit.entries(s, subject=f"{world.name}@{v2}", action=a)[0]
            for a in ("model.shadow", "model.unshadow")
        )
        assert audit.verify(s).ok
    assert (shadowed.actor, shadowed.reason) == ("alice", "compare on live traffic")
    assert shadowed.before == {"champion": v1, "challenger": None, "canary_percent": None,
                               "shadow": None}  # fmt: skip
    assert shadowed.after is not None
    assert shadowed.after["shadow"] == v2
    assert unshadowed.before is not None
    assert (unshadowed.before["shadow"], unshadowed.after) == (v2, shadowed.before)
    assert unshadowed.evidence == {"revision": 3}


def test_shadow_refuses_the_champion_the_challenger_and_unknown_versions(world: World) -> None:
    from registry import ModelNotFound, VersionNotFound

    world.policy("gates: {drift_reference: true}\n")
    v1, v2 = world.register(W), world.register(W * 2)
    promotions = world.cp.promotions
    promotions.promote(f"{world.name}@{v1}", "ci")
    promotions.promote(f"{world.name}@{v2}", "ci", canary_percent=10)
    before = promotions.snapshot(world.name)

    off = rf"is the champion; .*mlcp shadow {world.name} --off"
    with pytest.raises(InvalidTransition, match=off):
        promotions.shadow(f"{world.name}@champion", "ci")
    with pytest.raises(InvalidTransition, match="challenger of a 10% canary"):
        promotions.shadow(f"{world.name}@{v2}", "ci")
    with pytest.raises(VersionNotFound):
        promotions.shadow(f"{world.name}@9", "ci")
    with pytest.raises(ModelNotFound):
        promotions.unshadow("no_such_model_here", "ci")
    assert promotions.snapshot(world.name) == before


def test_setting_the_same_shadow_again_changes_nothing(world: World) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1 = world.register(W)
    promotions = world.cp.promotions
    assert promotions.unshadow(world.name, "ci").revision == 0  # no shadow: nothing to do
    first = promotions.shadow(f"{world.name}@{v1}", "ci")
    assert promotions.shadow(f"{world.name}@{v1}", "ci") == first
    with world.cp.sessions() as s:
        assert len(audit.entries(s, action="model.shadow", subject=f"{world.name}@{v1}")) == 1
        assert audit.entries(s, action="model.unshadow", subject=f"{world.name}@*") == []


def test_promoting_the_shadow_ends_the_shadowing(world: World) -> None:
    world.policy("gates: {drift_reference: true}\n")
    v1, v2 = world.register(W), world.register(W * 2)
    promotions = world.cp.promotions
    promotions.promote(f"{world.name}@{v1}", "ci")
    promotions.shadow(f"{world.name}@{v2}", "ci")

    assert promotions.promote(f"{world.name}@{v2}", "ci", canary_percent=5).outcome == "canary"
    snap = promotions.snapshot(world.name)
    assert (snap.champion, snap.challenger, snap.canary_percent, snap.shadow) == (v1, v2, 5, None)
    with world.cp.sessions() as s:
        (canary,) = audit.entries(s, subject=f"{world.name}@{v2}", action="model.canary")
    assert canary.before is not None
    assert canary.after is not None
    assert (canary.before["shadow"], canary.after["shadow"]) == (v2, None)
