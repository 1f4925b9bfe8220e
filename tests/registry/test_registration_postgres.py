"""The registry with both stores on PostgreSQL: control-plane DB and MLflow's tracking store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.settings import Settings
from registry import RegistrationRequest
from tests.conftest import make_net


@pytest.fixture
def pg_cp(pg_url: str, pg_mlflow_uri: str, tmp_path: Path) -> Iterator[ControlPlane]:
    settings = Settings(
        home=tmp_path / ".mlcp",
        database_url=pg_url,
        mlflow_tracking_uri=pg_mlflow_uri,
        artifact_root=(tmp_path / "artifacts").as_uri(),
        actor="pg-tester",
    )
    with ControlPlane(settings) as cp:
        yield cp


def req(name: str, seed: int, key: str | None = None) -> RegistrationRequest:
    x = np.random.default_rng(seed).random((4, 4), dtype=np.float32)
    return RegistrationRequest(
        name=name, model=make_net(seed), input_example=x, idempotency_key=key, registered_by="ci"
    )


def test_register_and_read_back_on_postgres(pg_cp: ControlPlane, model_name: str) -> None:
    v1 = pg_cp.registry.register(req(model_name, 1))
    v2 = pg_cp.registry.register(req(model_name, 2))
    assert (v1.version, v2.version) == (1, 2)
    assert pg_cp.registry.get(f"{model_name}@2") == v2
    client = MlflowClient(pg_cp.settings.mlflow_tracking_uri, pg_cp.settings.mlflow_registry_uri)
    assert (
        client.get_model_version(model_name, "2").tags["mlcp.artifact_sha256"] == v2.artifact_sha256
    )
    with pg_cp.sessions() as s:
        assert audit.verify(s).rows == 2


def test_concurrent_retries_with_one_key_make_one_version(
    pg_cp: ControlPlane, model_name: str
) -> None:
    """Two CI retries racing with the same key: one registers, the other returns it or is
    told to retry; never two versions."""
    results: list[object] = []
    # Built once: torch's seeded initialisation is process-global and not thread-safe, and the
    # two retries must carry the same content, as two runs of one CI job do.
    request = req(model_name, 5, key="race")

    def attempt() -> None:
        try:
            results.append(pg_cp.registry.register(request))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = [r for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert versions
    assert {v.version for v in versions} == {1}  # type: ignore[attr-defined]
    assert all("still in progress" in str(e) for e in errors), errors
    assert len(pg_cp.registry.versions(model_name)) == 1


def test_concurrent_registrations_get_distinct_versions(
    pg_cp: ControlPlane, model_name: str
) -> None:
    """Two pipelines registering new content at once: two versions, each with its lineage."""
    results: list[object] = []

    requests = {seed: req(model_name, seed) for seed in (11, 12)}  # built before the threads

    def attempt(seed: int) -> None:
        try:
            results.append(pg_cp.registry.register(requests[seed]))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=attempt, args=(s,)) for s in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(v.version for v in pg_cp.registry.versions(model_name)) == [1, 2]
    with pg_cp.sessions() as s:
        assert audit.verify(s).ok
