"""Features through the control plane and the CLI: apply, materialize behind the data gate,
training sets, generations, audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controlplane import audit
from controlplane.cli import main
from controlplane.context import ControlPlane

DEFS = """
from features.definitions import Definitions, EntityDef, FeatureServiceDef, FeatureViewDef, Field

DEFINITIONS = Definitions(
    entities=[EntityDef("user", join_key="user_id")],
    views=[FeatureViewDef(
        name="user_stats", version=1, entity="user",
        fields=[Field("spend", "float32", nullable=False), Field("visits", "int64")],
        source="user_stats.parquet", ttl_s=30 * 86400,
        expectations=[{"type": "expect_column_values_to_be_between",
                       "kwargs": {"column": "spend", "min_value": 0, "max_value": 1000}}],
    )],
    services=[FeatureServiceDef("user_features", 1, ["user_stats@1"])],
)
"""
DAY = pd.Timestamp("2026-01-10T00:00:00Z")


def source(spend: list[float | None], when: pd.Timestamp = DAY) -> pd.DataFrame:
    n = len(spend)
    return pd.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "spend": pd.array(spend, dtype="Float32"),
            "visits": np.arange(n, dtype=np.int64) * 2,
            "event_timestamp": [when] * n,
        }
    )


@pytest.fixture
def repo(cp: ControlPlane, tmp_path: Path, capsys, monkeypatch) -> Path:
    monkeypatch.setenv("MLCP_HOME", str(cp.settings.home))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", cp.settings.mlflow_tracking_uri)
    (tmp_path / "defs.py").write_text(DEFS)
    source([10.0, 20.0, 30.0]).to_parquet(tmp_path / "user_stats.parquet", index=False)
    assert main(["features", "apply", "--file", str(tmp_path / "defs.py")]) == 0
    capsys.readouterr()
    return tmp_path


def cli_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out)


def test_apply_is_listed_and_audited(cp: ControlPlane, repo: Path, capsys) -> None:
    code, listed = cli_json(capsys, "features", "list")
    assert code == 0
    assert [v["ref"] for v in listed["views"]] == ["user_stats@1"]
    assert listed["services"][0]["features"] == ["user_stats@1:spend", "user_stats@1:visits"]
    with cp.sessions() as s:
        (row,) = audit.entries(s, action="features.apply")
    assert row.after == {"created": ["entity user", "view user_stats@1", "service user_features@1"],
                         "updated": []}  # fmt: skip


def test_materialize_then_refuse_bad_data_keeps_online_values(
    cp: ControlPlane, repo: Path, capsys
) -> None:
    window = ["--start", "2026-01-01", "--end", "2026-01-31"]
    code, done = cli_json(capsys, "features", "materialize", "user_stats@1", *window)
    assert (code, done["materialized"], done["rows"]) == (0, True, 3)
    client = cp.features.client()
    before = client.get("user_features@1", [{"user_id": 1}]).rows[0].values
    assert before is not None
    assert before["spend"] == pytest.approx(20.0)

    # a later batch with a null in a non-null feature and a value out of range
    later = DAY + pd.Timedelta(days=1)
    source([11.0, None, 5000.0], when=later).to_parquet(repo / "user_stats.parquet", index=False)
    code, refused = cli_json(capsys, "features", "materialize", "user_stats@1", *window)
    assert code == 1
    assert refused["materialized"] is False
    failed = {(f["expectation"], f["column"]) for f in refused["report"]["failures"]}
    assert ("expect_column_values_to_not_be_null", "spend") in failed
    assert ("expect_column_values_to_be_between", "spend") in failed

    fresh = cp.features.client()  # a new process's cache: it reads the online store itself
    after = fresh.get("user_features@1", [{"user_id": 1}]).rows[0].values
    assert after == before
    assert cp.features.generations.current(["user_stats__v1"]) == {"user_stats__v1": 1}
    with cp.sessions() as s:
        actions = [e.action for e in audit.entries(s, subject="user_stats@1")]
    assert actions == ["features.refuse", "features.materialize"]
    code, shown = cli_json(capsys, "features", "show", "user_stats@1")
    assert [m["passed"] for m in shown["materializations"]] == [False, True]


def test_training_set_and_registration_pin_the_service(
    cp: ControlPlane, repo: Path, capsys, model_name: str
) -> None:
    import torch

    assert main(["features", "materialize", "user_stats@1", "--start", "2026-01-01"]) == 0
    assert "3 rows online" in capsys.readouterr().out
    entities = pd.DataFrame(
        {"user_id": [0, 1, 2], "event_timestamp": [DAY + pd.Timedelta(hours=1)] * 3,
         "label": [0, 1, 1]}
    )  # fmt: skip
    entities.to_parquet(repo / "entities.parquet", index=False)
    out = repo / "train.parquet"
    code, ts = cli_json(
        capsys, "features", "training-set", "user_features@1",
        "--entities", str(repo / "entities.parquet"), "--label", "label", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    frame = pd.read_parquet(out)
    assert frame["spend"].tolist() == pytest.approx([10.0, 20.0, 30.0])
    assert ts["rows"] == 3

    torch.save(torch.nn.Linear(2, 1), repo / "m.pt")
    np.save(repo / "x.npy", np.ones((2, 2), np.float32))
    code, version = cli_json(
        capsys, "models", "register", model_name, "--model", str(repo / "m.pt"),
        "--unsafe-allow-pickle",
        "--input-example", str(repo / "x.npy"), "--training-data", str(out), "--label", "label",
        "--feature-service", "user_features@1",
    )  # fmt: skip
    assert code == 0
    assert version["feature_service"] == "user_features@1"
    assert version["training_data"]["fingerprint"] == ts["fingerprint"]


def test_unknown_feature_service_is_refused_at_registration(
    cp: ControlPlane, repo: Path, capsys, model_name: str
) -> None:
    import torch

    torch.save(torch.nn.Linear(2, 1), repo / "m.pt")
    np.save(repo / "x.npy", np.ones((2, 2), np.float32))
    argv = ["models", "register", model_name, "--model", str(repo / "m.pt"),
        "--unsafe-allow-pickle",
            "--input-example", str(repo / "x.npy"), "--feature-service", "nosuch@1"]  # fmt: skip
    code = main(argv)
    assert code == 2
    assert "mlcp features list" in capsys.readouterr().err


def test_evaluate_builds_its_rows_from_the_feature_service(
    cp: ControlPlane, repo: Path, capsys, model_name: str
) -> None:
    import torch

    assert main(["features", "materialize", "user_stats@1", "--start", "2026-01-01"]) == 0
    torch.save(torch.nn.Linear(2, 1), repo / "m.pt")
    np.save(repo / "x.npy", np.ones((2, 2), np.float32))
    argv = ["models", "register", model_name, "--model", str(repo / "m.pt"),
        "--unsafe-allow-pickle", "--input-example",
            str(repo / "x.npy"), "--feature-service", "user_features@1"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    hours = [pd.Timedelta(hours=h) for h in (1, 1, 1, 2)]
    entities = pd.DataFrame(
        {
            "user_id": [0, 1, 2, 0],
            "label": [0, 1, 1, 0],
            "event_timestamp": [DAY + h for h in hours],
        }
    )
    entities.to_parquet(repo / "eval_entities.parquet", index=False)
    code, result = cli_json(
        capsys, "evaluate", f"{model_name}@1", "--data", str(repo / "eval_entities.parquet"),
        "--label", "label", "--feature-service", "user_features@1",
    )  # fmt: skip
    assert code == 0
    candidate = result["candidate"]
    assert candidate["dataset_rows"] == 4
    assert set(candidate["metrics"]) >= {"accuracy", "log_loss"}
    assert Path(candidate["dataset_source"]).parent == cp.settings.home / "evaluations"


def test_materialize_bumps_redis_generations_when_the_setting_says_so(
    settings, tmp_path: Path, redis_url: str, monkeypatch, capsys
) -> None:
    import uuid

    from controlplane.generations import DbGenerations
    from features.generations import RedisGenerations

    project = f"gens_{uuid.uuid4().hex[:10]}"  # the namespace of the Redis keys
    for var, value in {"MLCP_HOME": str(settings.home), "MLCP_FEAST_PROJECT": project,
                       "MLCP_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
                       "MLCP_FEATURE_GENERATIONS": redis_url}.items():  # fmt: skip
        monkeypatch.setenv(var, value)
    (tmp_path / "defs.py").write_text(DEFS)
    source([10.0, 20.0, 30.0]).to_parquet(tmp_path / "user_stats.parquet", index=False)
    assert main(["features", "apply", "--file", str(tmp_path / "defs.py")]) == 0
    capsys.readouterr()
    window = ["--start", "2026-01-01"]
    code, done = cli_json(capsys, "features", "materialize", "user_stats@1", *window)
    assert (code, done["materialized"]) == (0, True)
    gens = RedisGenerations(redis_url, namespace=project)
    try:
        assert gens.current(["user_stats__v1"]) == {"user_stats__v1": 1}
        with ControlPlane.open() as cp:
            assert isinstance(cp.features.generations, RedisGenerations)
            database = DbGenerations(cp.sessions).current(["user_stats__v1"])
            assert database == {"user_stats__v1": 0}  # the database was not asked
            [row] = cp.features.history("user_stats@1")
            assert row["generation"] == 1
    finally:
        import redis

        redis.Redis.from_url(redis_url).delete(gens.key("user_stats__v1"))
        gens.close()
