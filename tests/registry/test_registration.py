"""Registration on the embedded stores: lineage, plain-MLflow loading, idempotency, atomicity."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.db.models import ModelVersionRow
from registry import (
    IdempotencyConflict,
    InvalidModel,
    InvalidRegistration,
    ModelNotFound,
    RegistrationFailed,
    RegistrationRequest,
    TrainingData,
    VersionNotFound,
)
from registry.mlflow_backend import MlflowBackend
from tests.conftest import make_net


@pytest.fixture(autouse=True)
def _registrar_alone(cp: ControlPlane) -> None:
    """These are the registrar's own tests (saga, lineage, MLflow) with no Feast behind it:
    the control plane's registration rules are tested in tests/controlplane/test_registration.py."""
    cp.registry.rules = None


def mlflow_client(cp: ControlPlane) -> MlflowClient:
    return MlflowClient(cp.settings.mlflow_tracking_uri, cp.settings.mlflow_registry_uri)


def request(name: str, net: torch.nn.Module, example: np.ndarray, **kw: Any) -> RegistrationRequest:
    return RegistrationRequest(
        name=name,
        model=net,
        input_example=example,
        params={"lr": "0.01", "epochs": 3},
        metrics={"auc": 0.91},
        training_data=TrainingData(fingerprint="ab" * 32, rows=1000, source="train.parquet"),
        feature_service="user_stats@2",
        code_version="deadbeef",
        registered_by="alice",
        **kw,
    )


def test_register_records_full_lineage(cp: ControlPlane, model_name: str, net, example) -> None:
    v = cp.registry.register(request(model_name, net, example, idempotency_key="ci-1"))

    assert (v.version, v.state, v.model_format) == (1, "registered", "pt2")
    assert v.model_uri == f"models:/{model_name}/1"
    assert len(v.artifact_sha256) == 64
    assert v.feature_service == "user_stats@2"
    assert v.training_data is not None
    assert (v.training_data.fingerprint, v.training_data.rows) == ("ab" * 32, 1000)
    assert (v.code_version, v.registered_by) == ("deadbeef", "alice")
    assert v.params == {"lr": "0.01", "epochs": "3"}
    assert v.metrics == {"auc": 0.91}
    assert v.signature["inputs"]
    assert cp.registry.get(f"{model_name}@1") == v

    client = mlflow_client(cp)
    mv = client.get_model_version(model_name, "1")
    assert mv.tags["mlcp.artifact_sha256"] == v.artifact_sha256
    assert mv.tags["mlcp.feature_service"] == "user_stats@2"
    run = client.get_run(v.run_id)
    assert run.data.params["lr"] == "0.01"
    assert run.data.metrics["auc"] == pytest.approx(0.91)
    assert run.info.status == "FINISHED"

    with cp.sessions() as session:
        (row,) = audit.entries(session, subject=f"{model_name}@1")
        assert (row.action, row.actor) == ("model.register", "alice")
        assert row.evidence is not None
        assert row.evidence["artifact_sha256"] == v.artifact_sha256


def test_registered_version_loads_with_plain_mlflow_in_a_fresh_process(
    cp: ControlPlane, model_name: str, net, example
) -> None:
    v = cp.registry.register(request(model_name, net, example))
    np.save(cp.settings.home / "x.npy", example)
    script = (
        "import mlflow, numpy as np, torch, sys;"
        f"mlflow.set_tracking_uri({cp.settings.mlflow_tracking_uri!r});"
        f"m = mlflow.pytorch.load_model('models:/{model_name}/{v.version}');"
        f"x = torch.from_numpy(np.load({str(cp.settings.home / 'x.npy')!r}));"
        "np.save(sys.argv[1], m(x).detach().numpy());"
        # What `mlflow models serve` does with {"inputs": [[...]]}: parse by the signature,
        # then pyfunc predict (a named tensor signature made this a dict the flavor refused).
        "from mlflow.pyfunc.scoring_server import infer_and_parse_data;"
        f"p = mlflow.pyfunc.load_model('models:/{model_name}/{v.version}');"
        "data = infer_and_parse_data({'inputs': x.numpy().tolist()},"
        " p.metadata.get_input_schema());"
        "np.save(sys.argv[2], np.asarray(p.predict(data)))"
    )
    out, served = cp.settings.home / "y.npy", cp.settings.home / "served.npy"
    subprocess.run([sys.executable, "-c", script, str(out), str(served)], check=True, timeout=120)
    with torch.inference_mode():
        expected = net(torch.from_numpy(example)).numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(served), expected, rtol=1e-5, atol=1e-6)


def test_second_registration_is_version_two(cp: ControlPlane, model_name: str, example) -> None:
    cp.registry.register(request(model_name, make_net(1), example))
    v2 = cp.registry.register(request(model_name, make_net(2), example))
    assert v2.version == 2
    assert [v.version for v in cp.registry.versions(model_name)] == [1, 2]


def test_retry_with_same_key_returns_same_version(
    cp: ControlPlane, model_name: str, net, example
) -> None:
    first = cp.registry.register(request(model_name, net, example, idempotency_key="build-42"))
    again = cp.registry.register(request(model_name, net, example, idempotency_key="build-42"))
    assert again == first
    client = mlflow_client(cp)
    assert len(client.search_model_versions(f"name = '{model_name}'")) == 1


def test_same_key_with_different_content_is_refused(
    cp: ControlPlane, model_name: str, example
) -> None:
    cp.registry.register(request(model_name, make_net(1), example, idempotency_key="build-7"))
    with pytest.raises(IdempotencyConflict, match="different content") as err:
        cp.registry.register(request(model_name, make_net(2), example, idempotency_key="build-7"))
    assert err.value.existing_version == 1
    assert len(cp.registry.versions(model_name)) == 1


def test_unknown_model_and_version(cp: ControlPlane, model_name: str, net, example) -> None:
    with pytest.raises(ModelNotFound, match="mlcp models list"):
        cp.registry.get(f"{model_name}@1")
    cp.registry.register(request(model_name, net, example))
    with pytest.raises(VersionNotFound, match="version 7"):
        cp.registry.get(f"{model_name}@7")
    with pytest.raises(VersionNotFound, match="alias 'champion'"):
        cp.registry.get(f"{model_name}@champion")


def test_alias_resolves_through_mlflow(cp: ControlPlane, model_name: str, net, example) -> None:
    v = cp.registry.register(request(model_name, net, example))
    mlflow_client(cp).set_registered_model_alias(model_name, "champion", "1")
    assert cp.registry.get(f"{model_name}@champion") == v


def test_object_that_is_not_a_module_is_refused(cp: ControlPlane, model_name: str, example) -> None:
    with pytest.raises(InvalidModel, match=r"not a torch\.nn\.Module"):
        cp.registry.register(request(model_name, {"weights": 1}, example))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("example", "field"),
    [
        (np.zeros((1, 4), np.float32), "at least 2 rows"),
        (np.zeros(4, np.float32), "shape"),
        (np.full((3, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_input_example_is_refused(
    cp: ControlPlane, model_name: str, net, example, field
) -> None:
    with pytest.raises(InvalidRegistration, match=field):
        cp.registry.register(request(model_name, net, example))
    assert cp.lineage.pending() == []


def test_bad_metric_and_feature_service_are_refused(
    cp: ControlPlane, model_name: str, net, example
) -> None:
    bad_metric = RegistrationRequest(
        name=model_name, model=net, input_example=example, metrics={"auc": float("nan")}
    )
    with pytest.raises(InvalidRegistration, match="NaN"):
        cp.registry.register(bad_metric)
    bad_fs = RegistrationRequest(
        name=model_name, model=net, input_example=example, feature_service="user_stats"
    )
    with pytest.raises(InvalidRegistration, match="NAME@VERSION"):
        cp.registry.register(bad_fs)


class DataDependent(torch.nn.Module):
    """Python control flow on tensor values: torch.export can't trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


def test_model_torch_export_cannot_trace_is_refused_and_undone(
    cp: ControlPlane, model_name: str, example
) -> None:
    with pytest.raises(InvalidModel, match=r"torch\.export"):
        cp.registry.register(request(model_name, DataDependent(), example))
    assert_nothing_left(cp, model_name)


# -- atomicity: fail every step in turn ---------------------------------------------------------
MLFLOW_STEPS = [
    "start_run",
    "log_run_data",
    "log_model",
    "verify_model",
    "create_version",
    "end_run",
]


class FailingBackend:
    """The real MLflow backend, failing at one method: before calling it, or after it ran."""

    def __init__(self, real: MlflowBackend, method: str, after: bool) -> None:
        self._real, self._method, self._after = real, method, after

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name != self._method:
            return attr

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self._after:
                attr(*args, **kwargs)
            raise ConnectionError(f"injected failure in {name}")

        return failing


def assert_nothing_left(cp: ControlPlane, name: str) -> None:
    client = mlflow_client(cp)
    assert client.search_registered_models(f"name = '{name}'") == []
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        active = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
        assert active == []
        assert client.search_logged_models(experiment_ids=[exp.experiment_id]) == []
    with cp.sessions() as session:
        assert session.query(ModelVersionRow).filter_by(model_name=name).count() == 0
        assert audit.entries(session, subject=f"{name}@1") == []


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("method", MLFLOW_STEPS)
def test_failure_at_any_mlflow_step_leaves_nothing(
    cp: ControlPlane, model_name: str, net, example, method: str, after: bool
) -> None:
    real = cp.registry.backend
    cp.registry._backend = FailingBackend(real, method, after)  # type: ignore[assignment]
    with pytest.raises(RegistrationFailed, match="injected failure") as err:
        cp.registry.register(request(model_name, net, example, idempotency_key="k"))
    assert err.value.leftovers == []
    assert_nothing_left(cp, model_name)

    # and the same request goes through once the fault is gone
    cp.registry._backend = real
    assert cp.registry.register(request(model_name, net, example, idempotency_key="k")).version == 1


def test_failure_recording_lineage_leaves_nothing(
    cp: ControlPlane, model_name: str, net, example, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("injected: database went away")

    monkeypatch.setattr(cp.lineage, "complete", broken)
    with pytest.raises(RegistrationFailed, match="record lineage"):
        cp.registry.register(request(model_name, net, example))
    assert_nothing_left(cp, model_name)


def test_recover_undoes_a_registration_a_killed_process_left(
    cp: ControlPlane, model_name: str, net, example, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Killed(BaseException):
        pass

    def killed(*_: Any) -> None:
        raise Killed

    # A BaseException that is not an Exception stands in for a kill: the undo runs in
    # `finally`-like code, so to leave debris we also disable the undo's two steps.
    monkeypatch.setattr(cp.lineage, "complete", killed)
    monkeypatch.setattr(cp.lineage, "abandon", lambda _rid: None)
    real = cp.registry.backend
    monkeypatch.setattr(real, "purge_registration", lambda *_: None)
    with pytest.raises(Killed):
        cp.registry.register(request(model_name, net, example))
    monkeypatch.undo()

    assert len(cp.lineage.pending()) == 1
    assert mlflow_client(cp).search_model_versions(f"name = '{model_name}'")
    assert cp.registry.recover(older_than=timedelta(hours=1)) == []  # too fresh: left alone
    assert len(cp.registry.recover(older_than=timedelta(0))) == 1
    assert cp.lineage.pending() == []
    assert_nothing_left(cp, model_name)


def test_example_the_model_cannot_take_is_refused_and_undone(
    cp: ControlPlane, model_name: str, net
) -> None:
    wrong_width = np.zeros((3, 7), np.float32)
    with pytest.raises(InvalidModel, match=r"forward\(\) fails on the input example"):
        cp.registry.register(request(model_name, net, wrong_width))
    assert_nothing_left(cp, model_name)
