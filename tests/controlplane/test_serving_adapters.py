"""The control plane's implementations of serving's interfaces, on real parts: the registry
on MLflow, Feast on SQLite, the control-plane database on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy
import torch

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.errors import InvalidTransition
from controlplane.policy import Policy
from controlplane.serving import (
    DbDesiredState,
    DbWindowSink,
    FeatureClientLookup,
    RegistryModelLoader,
    feature_lookup,
    model_spec,
    serving_windows,
)
from controlplane.serving.loader import tensor_specs
from controlplane.settings import Settings
from features import reference_statistics
from registry import RegistrationRequest, RegistryError
from registry.mlflow_backend import logged_model_id
from serving.config import BATCH, CachePolicy, RateLimit, ServingPolicy
from serving.errors import FeaturesUnavailable, InvalidInput, ModelLoadFailed
from serving.spec import Deployment, TensorSpec
from serving.windows import LATENCY_EDGES_S, Sketch, Window
from tests.conftest import make_net
from tests.waiting import wait_until

COLUMNS = ["a", "b", "c", "d"]


def register(cp: ControlPlane, name: str, seed: int = 0, **extra: Any) -> int:
    x = np.random.default_rng(seed).random((8, 4), dtype=np.float32)
    stats = reference_statistics(pd.DataFrame(x, columns=COLUMNS))
    request = RegistrationRequest(
        name=name, model=make_net(seed), input_example=x, reference_stats=stats, **extra
    )
    return cp.registry.register(request).version


@pytest.fixture(params=["sqlite", "postgresql"])
def plane(request: pytest.FixtureRequest, settings: Settings) -> Iterator[ControlPlane]:
    """A control plane on SQLite, or on PostgreSQL (with MLflow there too)."""
    if request.param == "postgresql":
        settings = Settings(
            home=settings.home,
            database_url=request.getfixturevalue("pg_url"),
            mlflow_tracking_uri=request.getfixturevalue("pg_mlflow_uri"),
            artifact_root=settings.artifact_root,
            actor="tester",
        )
    with ControlPlane(settings) as cp:
        yield cp


@pytest.fixture
def pg_plane(pg_url: str, pg_mlflow_uri: str, settings: Settings) -> Iterator[ControlPlane]:
    pg = Settings(
        home=settings.home,
        database_url=pg_url,
        mlflow_tracking_uri=pg_mlflow_uri,
        artifact_root=settings.artifact_root,
        actor="tester",
    )
    with ControlPlane(pg) as cp:
        yield cp


def deployable(cp: ControlPlane, name: str, versions: int) -> list[int]:
    """``versions`` registered versions under a policy any of them passes."""
    found = [register(cp, name, seed) for seed in range(versions)]
    cp.policies.set(name, Policy.from_yaml("gates: {drift_reference: true}"), "admin")
    return found


# -- loader --------------------------------------------------------------------------------------
def test_loader_builds_the_spec_and_the_module_answers_like_the_original(
    cp: ControlPlane, model_name: str
) -> None:
    version = register(cp, model_name, seed=3, input_names=tuple(COLUMNS))
    loaded = RegistryModelLoader(cp).load(model_name, version)

    spec = loaded.spec
    assert (spec.name, spec.version, spec.ref) == (model_name, version, f"{model_name}@{version}")
    assert spec.inputs == (TensorSpec("input", "FP32", (-1, 4)),)
    assert spec.outputs == (TensorSpec("output", "FP32", (-1, 1)),)
    assert spec.feature_names == tuple(COLUMNS)
    assert spec.reference is not None
    assert list(spec.reference["features"]) == COLUMNS
    x = torch.from_numpy(np.random.default_rng(9).random((5, 4), dtype=np.float32))
    with torch.inference_mode():
        assert torch.allclose(loaded.module(x), make_net(3)(x), atol=1e-6)


def test_loader_hands_over_what_the_policy_says_about_serving(
    cp: ControlPlane, model_name: str
) -> None:
    version = register(cp, model_name, seed=3, input_names=tuple(COLUMNS))
    loader = RegistryModelLoader(cp)
    assert loader.load(model_name, version).spec.serving == ServingPolicy()  # no policy
    policy = """
gates: {none: true}
serving:
  cache: {ttl_s: 30, max_entries: 500, shared: true}
  limits: {rate_per_s: 20, burst: 40}
  priority: batch
"""
    cp.policies.set(model_name, Policy.from_yaml(policy), "admin")
    assert loader.load(model_name, version).spec.serving == ServingPolicy(
        cache=CachePolicy(ttl_s=30, max_entries=500, shared=True),
        rate=RateLimit(20, 40),
        priority=BATCH,
    )


def test_loader_refuses_an_unknown_version_saying_where_to_look(
    cp: ControlPlane, model_name: str
) -> None:
    register(cp, model_name)
    with pytest.raises(ModelLoadFailed, match=rf"mlcp models list --name {model_name}") as info:
        RegistryModelLoader(cp).load(model_name, 7)
    assert info.value.ref == f"{model_name}@7"


def test_loader_reports_an_artifact_mlflow_cannot_load(cp: ControlPlane, model_name: str) -> None:
    version = cp.registry.get(f"{model_name}@{register(cp, model_name)}")
    cp.registry.backend.client.delete_logged_model(logged_model_id(version.source_uri))
    with pytest.raises(ModelLoadFailed, match="loads with MLflow") as info:
        RegistryModelLoader(cp).load(model_name, version.version)
    assert isinstance(info.value.__cause__, RegistryError)  # MLflow's error stays below


def test_loader_refuses_a_tampered_artifact_and_audits_it(
    cp: ControlPlane, model_name: str
) -> None:
    from mlflow.utils.file_utils import local_file_uri_to_path

    version = cp.registry.get(f"{model_name}@{register(cp, model_name)}")
    logged = cp.registry.backend.client.get_logged_model(logged_model_id(version.source_uri))
    stored = Path(local_file_uri_to_path(logged.artifact_location))
    (stored / "MLmodel").write_text((stored / "MLmodel").read_text() + "\n# changed\n")
    with pytest.raises(ModelLoadFailed, match="recorded at registration"):
        RegistryModelLoader(cp, actor="serving:test").load(model_name, version.version)
    with cp.sessions() as session:
        (row,) = audit.entries(session, subject=version.ref, action="model.artifact_refused")
    assert row.actor == "serving:test"
    assert row.evidence["recorded_sha256"] == version.artifact_sha256


@pytest.mark.parametrize("kind", ["pickled weight", "custom object"])
def test_loader_refuses_a_hostile_archive_even_when_its_digest_was_recorded(
    cp: ControlPlane, model_name: str, tmp_path: Path, kind: str
) -> None:
    # Someone who can write both the artifact store and the control-plane database swaps in
    # an archive that runs code: the digest matches, the archive is still read as data first.
    from mlflow.utils.file_utils import local_file_uri_to_path

    from controlplane.db.models import ModelVersionRow
    from registry.hashing import directory_sha256
    from tests.registry import crafted

    version = cp.registry.get(f"{model_name}@{register(cp, model_name)}")
    logged = cp.registry.backend.client.get_logged_model(logged_model_id(version.source_uri))
    stored = Path(local_file_uri_to_path(logged.artifact_location))
    archive = stored / "data" / "model.pt2"
    marker = tmp_path / "pwned"
    archive.write_bytes(crafted.HOSTILE[kind](archive.read_bytes(), marker))
    with cp.sessions.begin() as session:
        session.execute(
            sqlalchemy.update(ModelVersionRow)
            .where(
                ModelVersionRow.model_name == model_name,
                ModelVersionRow.version == version.version,
            )
            .values(artifact_sha256=directory_sha256(stored, exclude={"registered_model_meta"}))
        )
    with pytest.raises(ModelLoadFailed, match="not plain data"):
        RegistryModelLoader(cp).load(model_name, version.version)
    assert not marker.exists()


def test_spec_without_reference_has_no_feature_names(cp: ControlPlane, model_name: str) -> None:
    version = cp.registry.get(f"{model_name}@{register(cp, model_name)}")
    spec = model_spec(replace(version, reference_stats=None))
    assert (spec.feature_names, spec.reference) == ((), None)


def test_spec_with_a_reference_of_other_columns_leaves_them_unnamed(
    cp: ControlPlane, model_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    version = cp.registry.get(f"{model_name}@{register(cp, model_name)}")
    wrong = {"rows": 8, "features": {"a": {}, "b": {}}}
    assert model_spec(replace(version, reference_stats=wrong)).feature_names == ()
    assert "serving the columns unnamed" in caplog.text


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [("float32", "FP32"), ("float64", "FP64"), ("float16", "FP16"), ("int64", "INT64"),
     ("int32", "INT32"), ("int16", "INT16"), ("int8", "INT8"), ("uint8", "UINT8"),
     ("bool", "BOOL")],
)  # fmt: skip
def test_signature_dtypes_map_to_oip_datatypes(dtype: str, datatype: str) -> None:
    entry = {"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": [-1, 3, 2]}}
    signature = {"inputs": json.dumps([entry])}
    expected = TensorSpec("input", datatype, (-1, 3, 2))  # one unnamed tensor: "input"
    assert tensor_specs("m@1", signature, "inputs") == (expected,)


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        ({}, "signature has no inputs"),
        ({"inputs": json.dumps([{"type": "double", "name": "a"}])}, "'double' columns"),
        ({"inputs": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "str"}}])},
         "dtype 'str'"),
    ],
)  # fmt: skip
def test_signatures_serving_cannot_take_are_load_failures(signature, problem: str) -> None:
    with pytest.raises(ModelLoadFailed, match=problem):
        tensor_specs("m@1", signature, "inputs")


# -- desired state --------------------------------------------------------------------------------
def test_desired_state_reads_champion_canary_and_shadow(plane: ControlPlane, model_name) -> None:
    v1, v2, v3 = deployable(plane, model_name, 3)
    promotions = plane.promotions
    promotions.promote(f"{model_name}@{v1}", "ci")
    promotions.promote(f"{model_name}@{v2}", "ci", canary_percent=10)
    promotions.shadow(f"{model_name}@{v3}", "ci", "compare on live traffic")
    register(plane, "never_served_" + model_name[2:])

    source = DbDesiredState(plane.sessions)
    try:
        state = source.read()
        assert state == {
            model_name: Deployment(model_name, v1, v2, canary_percent=10, shadow=v3, revision=3)
        }
        assert state[model_name].role(v3) == "shadow"
        with DbDesiredState(plane.sessions, models=("other",)) as other:
            assert other.read() == {}
        promotions.unshadow(model_name, "ci", "seen enough")
        assert source.read()[model_name].shadow is None
    finally:
        source.close()


def test_sqlite_wait_returns_at_its_timeout_without_a_notification(
    cp: ControlPlane, model_name: str
) -> None:
    (v1,) = deployable(cp, model_name, 1)
    source = DbDesiredState(cp.sessions)
    source.read()
    cp.promotions.promote(f"{model_name}@{v1}", "ci")
    assert source.wait_for_change(0.05) is False  # SQLite can't announce: replicas poll
    assert (source.listening, source.notifications) == (False, 0)
    source.wait(0.01)
    source.close()


def test_an_unreachable_listen_server_means_polling_not_errors(cp: ControlPlane) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:1/mlcp"
    with DbDesiredState(cp.sessions, database_url=nowhere, connect_timeout_s=1) as source:
        assert source.read() == {}
        assert source.wait_for_change(0.05) is False
        assert not source.listening


def test_close_wakes_a_wait(cp: ControlPlane) -> None:
    source = DbDesiredState(cp.sessions)
    woken = run_in_thread(lambda: source.wait_for_change(600))
    source.close()
    assert woken() is False


def test_notify_wakes_wait_after_a_shadow_in_another_connection(
    pg_plane: ControlPlane, model_name: str
) -> None:
    v1, v2 = deployable(pg_plane, model_name, 2)
    pg_plane.promotions.promote(f"{model_name}@{v1}", "ci")
    source = DbDesiredState(pg_plane.sessions, database_url=pg_plane.settings.database_url)
    try:
        assert source.read()[model_name].shadow is None
        assert source.listening
        woken = run_in_thread(lambda: source.wait_for_change(600))
        pg_plane.promotions.shadow(f"{model_name}@{v2}", "ci", "try it")
        assert woken() is True
        assert source.notifications == 1
        assert source.read()[model_name].shadow == v2
    finally:
        source.close()


def test_promotion_notifies_and_a_refused_change_does_not(
    pg_plane: ControlPlane, model_name: str
) -> None:
    v1, v2 = deployable(pg_plane, model_name, 2)
    source = DbDesiredState(pg_plane.sessions)  # the URL comes from the sessions' engine
    elsewhere = DbDesiredState(pg_plane.sessions, models=("some_other_model",))
    try:
        source.read()
        elsewhere.read()
        pg_plane.promotions.promote(f"{model_name}@{v1}", "ci")
        assert source.wait_for_change(600) is True
        assert elsewhere.wait_for_change(0.3) is False  # another model's change: keep waiting

        with pytest.raises(InvalidTransition, match="the champion"):
            pg_plane.promotions.shadow(f"{model_name}@{v1}", "ci", "no")
        assert source.wait_for_change(0.3) is False  # rolled back: nothing was announced
        pg_plane.promotions.promote(f"{model_name}@{v2}", "ci", canary_percent=20)
        assert source.wait_for_change(600) is True
        assert source.notifications == 2
    finally:
        source.close()
        elsewhere.close()


def test_broken_listen_connection_reconnects_within_the_wait_whatever_its_timeout(
    pg_plane: ControlPlane, pg_admin: sqlalchemy.Engine, model_name: str
) -> None:
    (v1,) = deployable(pg_plane, model_name, 1)
    source = DbDesiredState(pg_plane.sessions)
    try:
        source.read()
        database = pg_plane.engine.url.database
        with pg_admin.connect() as conn:
            killed = conn.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND query = 'LISTEN mlcp_desired_state'"
                ),
                {"db": database},
            ).scalars()
            assert list(killed) == [True]
        started = time.monotonic()
        # Never raises; reconnects within RECONNECT_S and returns (a change may have been
        # missed meanwhile) long before its hour is up.
        assert source.wait_for_change(3600) is False
        assert time.monotonic() - started < 60
        assert source.listening
        assert source.listen_outage.outages == 1
        assert not source.listen_outage.down
        pg_plane.promotions.promote(f"{model_name}@{v1}", "ci")
        assert source.wait_for_change(600) is True
    finally:
        source.close()


def run_in_thread(target: Callable[[], bool]) -> Callable[[], bool]:
    """Start ``target`` now; the returned callable joins it and gives its result."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()

    def join() -> bool:
        thread.join(timeout=120)
        assert not thread.is_alive(), "wait() did not return"
        return result[0]

    return join


# -- window sink ----------------------------------------------------------------------------------
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def window(model: str, version: int, minute: int, replica: str = "host-a:1") -> Window:
    sketch = Sketch(4, 1, 2.0, 1.5, 0.1, 0.9, (0.0, 0.5, 1.0), (2, 2))
    return Window(
        replica=replica,
        model=model,
        version=version,
        role="champion" if version == 1 else "shadow",
        started_at=T0 + timedelta(minutes=minute),
        ended_at=T0 + timedelta(minutes=minute + 1),
        requests=10 + minute,
        errors=1,
        rejected=2,
        latency_sum_s=0.25,
        latency_counts=(3, 5) + (0,) * (len(LATENCY_EDGES_S) - 1),
        features={"a": sketch},
        predictions=sketch,
    )


def test_window_sink_round_trip(plane: ControlPlane, model_name: str) -> None:
    sink = DbWindowSink(plane.sessions)
    sent = [window(model_name, 1, 0), window(model_name, 2, 0), window(model_name, 1, 1, "b:2")]
    sink.report(sent)
    sink.report([])  # nothing to write: no transaction, no error
    sink.report([window("other_" + model_name, 1, 5)])

    found = serving_windows(plane.sessions, model_name)
    assert [(w["version"], w["replica"]) for w in found] == [(1, "b:2"), (2, "host-a:1"),
                                                            (1, "host-a:1")]  # fmt: skip
    newest = found[0]
    assert {k: v for k, v in newest.items() if k not in ("id", "received_at")} == sent[2].to_dict()
    assert datetime.fromisoformat(newest["received_at"]).tzinfo is not None
    assert [w["ended_at"] for w in serving_windows(plane.sessions, model_name, 1)] == [
        sent[2].to_dict()["ended_at"],
        sent[0].to_dict()["ended_at"],
    ]
    assert len(serving_windows(plane.sessions, model_name, limit=1)) == 1
    assert serving_windows(plane.sessions, model_name, version=3) == []


# -- feature lookup (Feast on SQLite) -------------------------------------------------------------
DEFS = """
from features.definitions import Definitions, EntityDef, FeatureServiceDef, FeatureViewDef, Field

DEFINITIONS = Definitions(
    entities=[EntityDef("user", join_key="user_id")],
    views=[FeatureViewDef(
        name="user_stats", version=1, entity="user",
        fields=[Field("spend", "float32", nullable=False), Field("visits", "int64")],
        source="user_stats.parquet", ttl_s=30 * 86400,
    )],
    services=[FeatureServiceDef("user_features", 1, ["user_stats@1"])],
)
"""
DAY = pd.Timestamp("2026-01-10T00:00:00Z")


@pytest.fixture
def features_cp(cp: ControlPlane, tmp_path: Path) -> ControlPlane:
    (tmp_path / "defs.py").write_text(DEFS)
    pd.DataFrame(
        {"user_id": np.arange(3, dtype=np.int64), "spend": np.float32([10.0, 20.0, 30.0]),
         "visits": np.arange(3, dtype=np.int64) * 2, "event_timestamp": [DAY] * 3}
    ).to_parquet(tmp_path / "user_stats.parquet", index=False)  # fmt: skip
    cp.features.apply(tmp_path / "defs.py", actor="test")
    cp.features.materialize("user_stats@1", DAY - timedelta(days=1), DAY + timedelta(days=1), "t")
    return cp


def test_lookup_reads_features_and_none_for_unknown_entities(features_cp: ControlPlane) -> None:
    lookup = feature_lookup(features_cp)
    assert lookup.generation("user_features@1") is None  # never looked up: unknown
    rows = lookup.lookup("user_features@1", [{"user_id": 1}, {"user_id": 9}])
    assert rows == [{"spend": pytest.approx(20.0), "visits": 2}, None]
    # The generation (what the prediction cache keys on) moves when a materialization lands.
    first = wait_until(lambda: lookup.generation("user_features@1"), what="first generation")
    features_cp.features.materialize(
        "user_stats@1", DAY - timedelta(days=1), DAY + timedelta(days=1), "t"
    )

    def moved() -> bool:
        lookup.lookup("user_features@1", [{"user_id": 1}])  # generations are checked on reads
        return lookup.generation("user_features@1") not in (None, first)

    wait_until(moved, what="the generation after a materialization")


@pytest.mark.parametrize("with_join_keys", [True, False])
def test_a_missing_join_key_is_invalid_input_naming_the_key(
    features_cp: ControlPlane, with_join_keys: bool
) -> None:
    lookup = feature_lookup(features_cp)
    if not with_join_keys:  # Feast's own check answers, through the same translation
        lookup = FeatureClientLookup(lookup.client)
    with pytest.raises(InvalidInput, match="user_id"):
        lookup.lookup("user_features@1", [{"customer_id": 2}])


@pytest.mark.parametrize(
    ("service", "entities", "problem"),
    [
        ("user_features@1", [{"user_id": "abc"}], "don't fit feature service user_features@1"),
        ("user_features@1", [{"user_id": [1, 2]}], "must be scalars"),
        ("user_features@1", [{}], "lacks join key 'user_id'"),
        ("user_features@1", [{"user_id": 1}, {"id": 2}], "entity 1 lacks join key 'user_id'"),
        ("nosuch@1", [{"user_id": 1}], "mlcp features list"),
        ("nosuch", [{"user_id": 1}], "NAME@VERSION"),
    ],
)
def test_entity_rows_that_do_not_fit_are_invalid_input(
    features_cp: ControlPlane, service: str, entities: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        feature_lookup(features_cp).lookup(service, entities)


def test_an_unreachable_online_store_is_features_unavailable(
    features_cp: ControlPlane, tmp_path: Path
) -> None:
    s = features_cp.settings
    down = Settings(
        home=s.home,
        mlflow_tracking_uri=s.mlflow_tracking_uri,
        artifact_root=s.artifact_root,
        feast_online_store=str(tmp_path / "no" / "such" / "online.db"),
    )
    with ControlPlane(down) as other:
        rows = feature_lookup(other).lookup("user_features@1", [{"user_id": 1}])
    assert isinstance(rows[0], FeaturesUnavailable)
    assert "online store of user_features@1 is unavailable" in str(rows[0])
