"""Evaluating registered versions on the embedded stores: rows, MLflow runs, champions, the CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import select

from controlplane.cli import main
from controlplane.context import ControlPlane
from controlplane.db.models import EvaluationRow, ModelRow
from controlplane.settings import Settings
from features import fingerprint_file
from registry import InvalidEvaluationData, ModelVersion, RegistrationRequest, RegistryError
from registry.evaluation import evaluate_frame
from registry.mlflow_backend import logged_model_id
from tests.conftest import make_net

EXAMPLE = np.random.default_rng(0).random((6, 4), dtype=np.float32)
CLASSIFIER_METRICS = {"accuracy", "f1", "log_loss", "roc_auc"}


def write_data(path: Path, seed: int = 0, rows: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)).astype(np.float32), columns=list("abcd"))
    frame["label"] = (frame["a"] - frame["c"] > 0).astype(int)
    frame.to_parquet(path)
    return path


def register(cp: ControlPlane, name: str, seed: int) -> ModelVersion:
    return cp.registry.register(
        RegistrationRequest(name=name, model=make_net(seed), input_example=EXAMPLE)
    )


def set_champion(cp: ControlPlane, name: str, version: int) -> None:
    with cp.sessions.begin() as session:
        session.merge(
            ModelRow(name=name, champion_version=version, revision=1, updated_at=datetime.now(UTC))
        )


def mlflow_client(cp: ControlPlane) -> MlflowClient:
    return MlflowClient(cp.settings.mlflow_tracking_uri, cp.settings.mlflow_registry_uri)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_data(tmp_path / "eval.parquet")


# -- the service --------------------------------------------------------------------------------
def test_evaluate_stores_a_row_and_a_finished_mlflow_run(
    cp: ControlPlane, model_name: str, data: Path
) -> None:
    version = register(cp, model_name, seed=0)
    fingerprint = fingerprint_file(data)

    candidate, champion = cp.evaluations.evaluate(f"{model_name}@1", data, "label")

    assert champion is None
    assert (candidate.name, candidate.version, candidate.task) == (model_name, 1, "classification")
    assert (candidate.dataset_fingerprint, candidate.dataset_rows) == (fingerprint.sha256, 64)
    assert candidate.dataset_source == str(data.resolve())
    # the stored pt2 program scores the rows as the original net does
    expected = evaluate_frame(make_net(0), pd.read_parquet(data), "label", "classification")
    assert set(candidate.metrics) == CLASSIFIER_METRICS
    assert candidate.metrics == pytest.approx(expected, abs=1e-5)

    with cp.sessions() as session:
        (row,) = session.scalars(select(EvaluationRow)).all()
    assert (row.model_name, row.version, row.created_by) == (model_name, 1, "tester")
    assert row.mlflow_run_id == candidate.mlflow_run_id
    assert cp.evaluations.latest(model_name, 1) == candidate

    client = mlflow_client(cp)
    assert candidate.mlflow_run_id is not None
    run = client.get_run(candidate.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"evaluate-{model_name}-1"
    assert client.get_experiment(run.info.experiment_id).name == model_name
    assert run.data.tags["mlcp.evaluation"] == "true"
    assert run.data.tags["mlcp.model_version"] == f"{model_name}@1"
    assert run.data.tags["mlcp.dataset_fingerprint"] == fingerprint.sha256
    assert run.data.metrics == pytest.approx(candidate.metrics)
    # ... and each metric is attached to the version's logged model, with the dataset
    logged = client.get_logged_model(logged_model_id(version.source_uri))
    on_model = {m.key: m for m in logged.metrics or [] if m.run_id == run.info.run_id}
    assert set(on_model) == CLASSIFIER_METRICS
    assert {m.dataset_digest for m in on_model.values()} == {fingerprint.sha256[:12]}
    assert {m.dataset_name for m in on_model.values()} == {"eval.parquet"}


def test_champion_is_evaluated_on_the_same_rows(
    cp: ControlPlane, model_name: str, data: Path
) -> None:
    register(cp, model_name, seed=0)
    register(cp, model_name, seed=1)
    set_champion(cp, model_name, 1)

    candidate, champion = cp.evaluations.evaluate(f"{model_name}@2", data, "label", actor="ci")

    assert champion is not None
    assert (champion.name, champion.version) == (model_name, 1)
    assert champion.dataset_fingerprint == candidate.dataset_fingerprint
    assert champion.mlflow_run_id not in (None, candidate.mlflow_run_id)
    assert champion.metrics != candidate.metrics  # two different nets
    frame = pd.read_parquet(data)
    assert champion.metrics == pytest.approx(
        evaluate_frame(make_net(0), frame, "label", "classification"), abs=1e-5
    )
    assert cp.evaluations.latest(model_name, 1, candidate.dataset_fingerprint) == champion
    with cp.sessions() as session:
        rows = session.scalars(select(EvaluationRow).order_by(EvaluationRow.id)).all()
    assert [(r.version, r.created_by) for r in rows] == [(2, "ci"), (1, "ci")]
    tags = mlflow_client(cp).get_run(champion.mlflow_run_id or "").data.tags
    assert tags["mlcp.model_version"] == f"{model_name}@1"


def test_the_champion_itself_is_evaluated_once(
    cp: ControlPlane, model_name: str, data: Path
) -> None:
    register(cp, model_name, seed=0)
    set_champion(cp, model_name, 1)

    _, champion = cp.evaluations.evaluate(f"{model_name}@1", data, "label")

    assert champion is None
    with cp.sessions() as session:
        assert len(session.scalars(select(EvaluationRow)).all()) == 1


def test_latest_picks_the_newest_and_filters_by_fingerprint(
    cp: ControlPlane, model_name: str, tmp_path: Path
) -> None:
    register(cp, model_name, seed=0)
    first = write_data(tmp_path / "first.parquet", seed=1)
    second = write_data(tmp_path / "second.parquet", seed=2, rows=32)

    on_first, _ = cp.evaluations.evaluate(f"{model_name}@1", first, "label")
    on_second, _ = cp.evaluations.evaluate(f"{model_name}@1", second, "label")

    assert cp.evaluations.latest(model_name, 1) == on_second
    assert cp.evaluations.latest(model_name, 1, on_first.dataset_fingerprint) == on_first
    assert cp.evaluations.latest(model_name, 1, "0" * 64) is None
    assert cp.evaluations.latest(model_name, 2) is None


def test_bad_data_stores_nothing(cp: ControlPlane, model_name: str, data: Path) -> None:
    register(cp, model_name, seed=0)

    with pytest.raises(InvalidEvaluationData, match="'churned' is not in the data"):
        cp.evaluations.evaluate(f"{model_name}@1", data, "churned")

    assert cp.evaluations.latest(model_name, 1) is None


def test_logged_model_id_reads_a_version_source() -> None:
    assert logged_model_id("models:/m-0123abcd") == "m-0123abcd"
    with pytest.raises(RegistryError, match="not a logged model URI"):
        logged_model_id("models:/churn/1")


# -- the CLI ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_plane(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store: tuple[str, str]
) -> tuple[Path, str]:
    """(MLCP_HOME, NAME): NAME has versions 1 (the champion) and 2. The CLI tests share this
    control plane: registering costs seconds, so the module does it once."""
    uri, artifacts = mlflow_store
    home = tmp_path_factory.mktemp("cli") / ".mlcp"
    name = f"t_{uuid.uuid4().hex[:10]}"
    settings = Settings(home=home, mlflow_tracking_uri=uri, artifact_root=artifacts, actor="t")
    with ControlPlane(settings) as plane:
        register(plane, name, seed=0)
        register(plane, name, seed=1)
        set_champion(plane, name, 1)
    return home, name


@pytest.fixture
def name(cli_plane: tuple[Path, str]) -> str:
    return cli_plane[1]


@pytest.fixture
def env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_store: tuple[str, str],
    cli_plane: tuple[Path, str],
) -> Path:
    """The shared control plane through the environment, as a user sets it. Returns the work
    dir; it holds eval.parquet and narrow.parquet (the same rows without column d)."""
    uri, artifacts = mlflow_store
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLCP_HOME", str(cli_plane[0]))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLCP_ARTIFACT_ROOT", artifacts)
    monkeypatch.setenv("MLCP_ACTOR", "cli-user")
    data = write_data(tmp_path / "eval.parquet")
    pd.read_parquet(data).drop(columns="d").to_parquet(tmp_path / "narrow.parquet")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("… ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("mlcp: error: ")
    return lines[0]


def test_cli_evaluate_json_shows_candidate_and_champion(capsys, env: Path, name: str) -> None:
    code, out, err = run(capsys, "evaluate", f"{name}@2", "--data", "eval.parquet",
                         "--label", "label", "--json")  # fmt: skip

    assert code == 0, err
    shown = json.loads(out)
    assert shown["candidate"]["ref"] == f"{name}@2"
    assert shown["champion"]["ref"] == f"{name}@1"
    assert set(shown["candidate"]["metrics"]) == CLASSIFIER_METRICS
    fingerprint = fingerprint_file(env / "eval.parquet").sha256
    assert shown["candidate"]["dataset_fingerprint"] == fingerprint
    assert shown["champion"]["dataset_fingerprint"] == fingerprint
    assert shown["candidate"]["dataset_source"] == str(env / "eval.parquet")
    assert "… evaluating the champion" in err  # progress goes to stderr


def test_cli_evaluate_prints_metrics_side_by_side(capsys, env: Path, name: str) -> None:
    wide = pd.read_parquet(env / "eval.parquet").assign(extra=1.0)  # a column the model lacks
    wide.to_parquet(env / "wide.parquet")

    code, out, err = run(capsys, "evaluate", f"{name}@2", "--data", "wide.parquet",
                         "--label", "label", "--features", "a, b,c,d")  # fmt: skip

    assert code == 0, err
    lines = out.splitlines()
    digest = fingerprint_file(env / "wide.parquet").sha256[:12]
    assert lines[0].startswith(f"dataset    sha256 {digest}, 64 rows")
    assert lines[2].startswith(f"candidate  {name}@2  (MLflow run ")
    assert lines[3].startswith(f"champion   {name}@1  (MLflow run ")
    assert lines[5].split() == ["METRIC", "CANDIDATE", "CHAMPION", "DELTA"]
    cells = [line.split() for line in lines]
    metric_rows = {row[0]: row[1:] for row in cells if row and row[0] in CLASSIFIER_METRICS}
    assert set(metric_rows) == CLASSIFIER_METRICS
    mine, theirs, delta = map(float, metric_rows["accuracy"])
    assert mine - theirs == pytest.approx(delta, abs=2e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.parquet", "--label", "label"], "missing.parquet: no such file"),
        (["--data", "eval.parquet", "--label", "churned"], "label column 'churned' is not in"),
        (["--data", "narrow.parquet", "--label", "label"],
         "model expects 4 features, the data has 3 columns: a, b, c"),
        (["--data", "eval.parquet", "--label", "label", "--features", "a,b,zz,d"],
         "zz are not in the data"),
        (["--data", "eval.parquet", "--label", "label", "--features", " , "],
         "name at least one column"),
        (["--data", "eval.parquet", "--label", "label", "--task", "ranking"], "'--task'"),
    ],
)  # fmt: skip
def test_cli_evaluate_bad_input_exits_2_with_one_line(
    capsys, env: Path, name: str, args: list[str], message: str
) -> None:
    code, _, err = run(capsys, "evaluate", f"{name}@2", *args)

    assert code == 2
    assert message in error_line(err)


def test_cli_evaluate_unknown_model_exits_2(capsys, env: Path, model_name: str) -> None:
    code, _, err = run(capsys, "evaluate", f"{model_name}@1", "--data", "eval.parquet",
                       "--label", "label")  # fmt: skip

    assert code == 2
    assert f"model {model_name!r} is not registered" in error_line(err)
