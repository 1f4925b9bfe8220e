"""One registration path: the CLI, the REST API and Python register the same model with the
same reference, covering exactly its five input features in input order; a training set's
keys, timestamp and label never enter it; a reference that can't be aligned is refused."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from controlplane.api.app import create_app
from controlplane.cli import main
from controlplane.context import ControlPlane
from features import reference_statistics
from registry import InvalidRegistration, RegistrationRequest

FEATURES = ["tenure", "charges", "calls", "usage", "contract"]
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
AT = pd.Timestamp("2026-01-10T00:00:00Z")
ROWS = 300


def five_input_model() -> torch.nn.Module:
    torch.manual_seed(4)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1),
                               torch.nn.Sigmoid()).eval()  # fmt: skip


@pytest.fixture
def home(cp: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:
    """Feast with churn_features@1 (five features) materialized, and a training set built by
    `mlcp features training-set`: customer_id, event_timestamp, churned and the five."""
    monkeypatch.setenv("MLCP_HOME", str(cp.settings.home))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", cp.settings.mlflow_tracking_uri)
    rng = np.random.default_rng(0)
    values = (rng.random((ROWS, 5)) * [70, 100, 6, 1, 24]).astype(np.float32)
    source = pd.DataFrame(values, columns=FEATURES).assign(
        customer_id=np.arange(ROWS, dtype=np.int64), event_timestamp=AT
    )
    source.to_parquet(tmp_path / "customer_stats.parquet", index=False)
    (tmp_path / "defs.py").write_text(DEFS)
    assert main(["features", "apply", "--file", str(tmp_path / "defs.py")]) == 0
    assert main(["features", "materialize", "customer_stats@1", "--start", "2026-01-01"]) == 0
    entities = pd.DataFrame(
        {"customer_id": np.arange(ROWS), "event_timestamp": AT + pd.Timedelta(hours=1),
         "churned": rng.integers(0, 2, ROWS)}
    )  # fmt: skip
    entities.to_parquet(tmp_path / "entities.parquet", index=False)
    argv = ["features", "training-set", "churn_features@1", "--entities",
            str(tmp_path / "entities.parquet"), "--label", "churned",
            "--out", str(tmp_path / "train.parquet")]  # fmt: skip
    assert main(argv) == 0
    net = five_input_model()
    torch.save(net, tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", values[:8])
    capsys.readouterr()
    return tmp_path


def cli_register(capsys, home: Path, name: str, *extra: str) -> tuple[int, str, str]:
    code = main(["models", "register", name, "--model", str(home / "model.pt"),
                 "--unsafe-allow-pickle",
                 "--input-example", str(home / "x.npy"),
                 "--training-data", str(home / "train.parquet"), *extra])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def exported(x: np.ndarray) -> str:
    program = torch.export.export(
        five_input_model(), (torch.from_numpy(x),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def test_cli_api_and_python_registrations_give_the_same_five_feature_reference(
    cp: ControlPlane, home: Path, capsys, model_name: str
) -> None:
    frame = pd.read_parquet(home / "train.parquet")
    assert {"customer_id", "event_timestamp", "churned", *FEATURES} == set(frame.columns)
    x = np.load(home / "x.npy")

    code, out, err = cli_register(capsys, home, model_name, "--label", "churned",
                                  "--feature-service", "churn_features@1", "--json")  # fmt: skip
    assert code == 0, err
    by_cli = json.loads(out)

    by_python = cp.registry.register(
        RegistrationRequest(
            name=model_name, model=five_input_model(), input_example=x,
            feature_service="churn_features@1", training_frame=frame, label="churned",
        )
    )  # fmt: skip

    token = cp.tokens.create("ci", "data-scientist", "test")[1]
    with TestClient(create_app(cp)) as client:
        body = {
            "model_pt2_base64": exported(x),
            "input_example": x.tolist(),
            "feature_service": "churn_features@1",
            "training_data": {"fingerprint": by_cli["training_data"]["fingerprint"],
                              "rows": len(frame)},
            # What a client naively sends: statistics of every column of its file.
            "reference_stats": json.loads(json.dumps(reference_statistics(frame), default=str)),
        }  # fmt: skip
        response = client.post(
            f"/v1/models/{model_name}/versions", json=body,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
    assert response.status_code == 201, response.text
    by_api = response.json()

    references = [by_cli["reference_stats"], dict(by_python.reference_stats or {}),
                  by_api["reference_stats"]]  # fmt: skip
    for reference in references:
        assert reference["inputs"] == FEATURES  # the order (JSON stores may sort the keys)
        assert set(reference["features"]) == set(FEATURES)
        assert reference["rows"] == ROWS
    assert references[0] == references[1] == references[2]
    assert by_cli["training_data"]["fingerprint"] == by_python.training_data.fingerprint
    # The prediction reference: the model's outputs on the training rows (CLI and Python).
    assert by_cli["prediction_reference"] == by_python.prediction_reference
    assert by_cli["prediction_reference"]["source"] == "training"
    # ... and serving will name the columns as the feature service does.
    from controlplane.serving import model_spec

    assert model_spec(by_python).feature_names == tuple(FEATURES)


def test_a_reference_that_cannot_be_aligned_is_refused_saying_what_to_change(
    cp: ControlPlane, home: Path, capsys, model_name: str
) -> None:
    # Without a feature service, the file's numeric columns (the key among them) are not
    # the model's five inputs: refused, naming the fix.
    code, _, err = cli_register(capsys, home, model_name, "--label", "churned")
    assert code == 2
    assert "customer_id" in err
    assert "--feature-service" in err
    # ... naming the inputs fixes it.
    code, out, err = cli_register(capsys, home, model_name, "--features", ",".join(FEATURES),
                                  "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["reference_stats"]["inputs"] == FEATURES

    frame = pd.read_parquet(home / "train.parquet")
    x = np.load(home / "x.npy")
    partial = reference_statistics(frame, columns=FEATURES[:4])  # lacks "contract"
    with pytest.raises(InvalidRegistration, match="contract") as refused:
        cp.registry.register(
            RegistrationRequest(
                name=model_name, model=five_input_model(), input_example=x,
                feature_service="churn_features@1", reference_stats=partial,
            )
        )  # fmt: skip
    assert "reference_statistics(frame, columns=" in str(refused.value)
    with pytest.raises(InvalidRegistration, match="takes 4 inputs"):
        cp.registry.register(
            RegistrationRequest(
                name=model_name, model=torch.nn.Linear(4, 1), input_example=x[:, :4],
                feature_service="churn_features@1",
            )
        )  # fmt: skip
    assert len(cp.registry.versions(model_name)) == 1  # only the one that was right
