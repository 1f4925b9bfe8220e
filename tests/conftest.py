"""Shared fixtures: real PostgreSQL, MLflow on SQLite (created once), fresh control planes.

Tests that use a PostgreSQL or Redis fixture are marked ``integration`` automatically.
Without the service they skip on a developer's machine and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# Before anything imports mlflow: quiet, no progress bars, no telemetry from tests.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
for _var in [v for v in os.environ if v.startswith("MLCP_")]:
    del os.environ[_var]  # a developer's settings must not leak into the suite

import numpy as np
import pytest
import sqlalchemy
import torch

from controlplane.context import ControlPlane
from controlplane.settings import Settings

PG_HOST = os.environ.get("MLCP_TEST_PG_HOST", "127.0.0.1:5432")
PG_ADMIN_URL = f"postgresql+psycopg://postgres@{PG_HOST}/postgres"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
INTEGRATION_FIXTURES = {"pg_admin", "pg_database", "pg_url", "pg_mlflow_uri", "redis_url"}
REDIS_HOST = os.environ.get("MLCP_TEST_REDIS_HOST", "127.0.0.1:6379")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    # The slow modules first (a stable sort keeps every module's own order): pytest-xdist
    # hands out whole modules in this order, so no worker starts a long one as the other ends.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _no_prometheus_multiproc_env() -> Iterator[None]:
    """Importing feast sets PROMETHEUS_MULTIPROC_DIR in os.environ for the rest of the
    process; servers the tests start would inherit it and keep their metrics in feast's
    temporary files. Each test starts and ends without it."""
    for var in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        os.environ.pop(var, None)
    yield
    for var in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
        os.environ.pop(var, None)


def service_missing(what: str, why: object) -> None:
    message = (
        f"{what} is not reachable ({why}); start it as docs/operations.md#local-services "
        "says (pg_ctlcluster / redis-server)"
    )
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


# -- PostgreSQL ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        service_missing(f"PostgreSQL at {PG_HOST}", str(exc.orig).strip().splitlines()[0])
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_database(pg_admin: sqlalchemy.Engine) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases (dropped at the end of the session)."""
    created: list[str] = []

    def make() -> str:
        name = f"mlcp_test_{uuid.uuid4().hex[:12]}"
        with pg_admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return f"postgresql+psycopg://postgres@{PG_HOST}/{name}"

    yield make
    with pg_admin.connect() as conn:
        for name in created:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_database: Callable[[], str]) -> str:
    """A fresh PostgreSQL database for one test."""
    return pg_database()


@pytest.fixture(scope="session")
def pg_mlflow_uri(pg_database: Callable[[], str]) -> str:
    """MLflow's tracking store on PostgreSQL, its schema created once per session."""
    from registry.mlflow_backend import MlflowBackend

    uri = pg_database()
    MlflowBackend(uri)  # creates MLflow's tables (its own alembic_version)
    return uri


# -- Redis --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> str:
    """redis://host:port of the machine's Redis; tests namespace their keys (unique names)."""
    import redis

    url = f"redis://{REDIS_HOST}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        service_missing(f"Redis at {REDIS_HOST}", exc)
    finally:
        client.close()
    return url


# -- MLflow on SQLite ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tracking URI, artifact root): one SQLite MLflow for the session; creating it costs ~3 s."""
    from registry.mlflow_backend import MlflowBackend

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    MlflowBackend(uri, artifact_root=artifacts)
    return uri, artifacts


@pytest.fixture
def settings(tmp_path: Path, mlflow_store: tuple[str, str]) -> Settings:
    """Embedded settings: a fresh SQLite control-plane DB, the session's MLflow."""
    uri, artifacts = mlflow_store
    return Settings(
        home=tmp_path / ".mlcp",
        mlflow_tracking_uri=uri,
        artifact_root=artifacts,
        actor="tester",
    )


@pytest.fixture
def cp(settings: Settings) -> Iterator[ControlPlane]:
    with ControlPlane(settings) as plane:
        yield plane


# -- models -------------------------------------------------------------------------------------
@pytest.fixture
def model_name() -> str:
    """A model name no other test uses (the MLflow store is shared by the session)."""
    return f"t_{uuid.uuid4().hex[:10]}"


def make_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).eval()


@pytest.fixture
def net() -> torch.nn.Module:
    return make_net()


@pytest.fixture
def example() -> np.ndarray:
    return np.random.default_rng(0).random((6, 4), dtype=np.float32)
