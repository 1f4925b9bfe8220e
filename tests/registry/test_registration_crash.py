"""Registrations killed with SIGKILL at each step: a retry with the same idempotency key
undoes what the dead process left and succeeds at once, leaving no MLflow version without
lineage and no orphan artifact; `recover` cleans up a dead process's intent without waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controlplane.context import ControlPlane
from registry import RegistrationRequest
from tests.conftest import make_net

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Runs one registration and SIGKILLs itself right after the named step returned.
CHILD = """
import os, signal, sys
import numpy as np, torch
from controlplane.context import ControlPlane
from controlplane.db.lineage_store import DbLineageStore
from registry import RegistrationRequest
from registry.mlflow_backend import MlflowBackend

torch.manual_seed(0)  # tests.conftest.make_net(), which this process must not import
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).eval()

step, name, key = sys.argv[1:4]
owner = DbLineageStore if step == "begin" else MlflowBackend
real = getattr(owner, step)

def then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

setattr(owner, step, then_die)
x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
with ControlPlane.open() as cp:
    cp.registry.register(
        RegistrationRequest(name=name, model=net, input_example=x, idempotency_key=key)
    )
raise SystemExit("the registration was not killed")
"""
STEPS = ["begin", "start_run", "log_model", "verify_model", "create_version", "end_run"]


def kill_during(cp: ControlPlane, step: str, name: str, key: str) -> None:
    s = cp.settings
    env = {
        **os.environ,
        "MLCP_HOME": str(s.home),
        "MLCP_MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
        "MLCP_ARTIFACT_ROOT": s.artifact_root,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, step, name, key],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert len(cp.lineage.pending()) == 1  # the dead process's intent


def request(name: str, example: np.ndarray, key: str) -> RegistrationRequest:
    return RegistrationRequest(
        name=name, model=make_net(), input_example=example, idempotency_key=key
    )


def assert_consistent(cp: ControlPlane, name: str) -> None:
    """Every MLflow version has lineage, and the only files are those of registered versions."""
    backend = cp.registry.backend
    registered = {v.version: v for v in cp.lineage.versions(name)}
    if backend.model_exists(name):
        in_mlflow = {
            int(mv.version) for mv in backend.client.search_model_versions(f"name = '{name}'")
        }
    else:
        in_mlflow = set()
    assert in_mlflow == set(registered)
    assert cp.lineage.pending() == []
    folder = Path(cp.settings.artifact_root.removeprefix("file://")) / name
    files = {p.relative_to(folder).parts[:2] for p in folder.rglob("*") if p.is_file()}
    expected = set()
    for v in registered.values():
        expected |= {("models", v.source_uri.removeprefix("models:/")), (v.run_id, "artifacts")}
    assert files <= expected, files - expected


@pytest.mark.parametrize("step", STEPS)
def test_a_retry_with_the_same_key_recovers_a_killed_registration_and_succeeds(
    cp: ControlPlane, model_name: str, example: np.ndarray, step: str
) -> None:
    kill_during(cp, step, model_name, "ci-42")
    version = cp.registry.register(request(model_name, example, "ci-42"))
    assert version.ref == f"{model_name}@1" or step in ("create_version", "end_run")
    assert cp.registry.register(request(model_name, example, "ci-42")) == version  # reused
    assert_consistent(cp, model_name)


def test_recover_undoes_a_dead_process_at_once_and_removes_its_artifacts(
    cp: ControlPlane, model_name: str
) -> None:
    kill_during(cp, "create_version", model_name, "ci-43")
    folder = Path(cp.settings.artifact_root.removeprefix("file://")) / model_name
    assert any(p.is_file() for p in folder.rglob("*"))  # the logged model's files
    assert len(cp.registry.recover()) == 1  # default --older-than 3600: the process is gone
    assert_consistent(cp, model_name)
    assert not any(p.is_file() for p in folder.rglob("*"))
