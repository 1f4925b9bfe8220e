"""A tiny churn feature repo: entity ``user``, ``user_stats@1`` and ``@2``, ``churn_features@1``
and ``@2``, a parquet source of 5 users x 10 updates over two days."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from features.definitions import Definitions, EntityDef, FeatureServiceDef, FeatureViewDef, Field
from features.feast_repo import FeastRepo

if TYPE_CHECKING:
    import feast

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=4, minutes=48)  # 10 updates per user in two days
END = T0 + timedelta(days=2)
USERS = (1, 2, 3, 4, 5)


def source_frame(bump: float = 0.0) -> pd.DataFrame:
    """tenure = 10 * user + k at update k; ``bump`` shifts spend (to tell writes apart)."""
    rows = [
        {
            "user_id": user,
            "event_timestamp": T0 + k * STEP,
            "tenure": 10 * user + k,
            "spend": 100.0 * user + k + bump,
            "visits": np.int32(k),
            "score": np.float32(user + k / 10),
        }
        for k in range(10)
        for user in USERS
    ]
    return pd.DataFrame(rows)


def churn_definitions(source: str = "user_stats.parquet") -> Definitions:
    v1_fields = [
        Field("tenure", "int64", nullable=False),
        Field("spend", "float64"),
        Field("visits", "int32"),
    ]
    spend_range = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "spend", "min_value": 0, "max_value": 10_000},
        "severity": "critical",
    }
    return Definitions(
        entities=[EntityDef("user", join_key="user_id")],
        views=[
            FeatureViewDef("user_stats", 1, "user", v1_fields, source=source),
            FeatureViewDef(
                "user_stats",
                2,
                "user",
                [*v1_fields, Field("score", "float32")],
                source=source,
                freshness_s=3600,
                expectations=[spend_range],
            ),
        ],
        services=[
            FeatureServiceDef("churn_features", 1, ["user_stats@1"]),
            FeatureServiceDef(
                "churn_features", 2, ["user_stats@2:tenure", "user_stats@2:spend", "user_stats@2"]
            ),
        ],
    )


MakeRepo = Callable[..., FeastRepo]


@pytest.fixture(scope="session")
def make_repo(tmp_path_factory: pytest.TempPathFactory) -> MakeRepo:
    """A FeastRepo in a fresh folder holding the source parquet (SQLite stores by default)."""

    def make(
        project: str = "churn", registry: str = "registry.db", online_store: str = "online.db"
    ) -> FeastRepo:
        folder = tmp_path_factory.mktemp("feast")
        source_frame().to_parquet(folder / "user_stats.parquet", index=False)
        return FeastRepo(folder, project, registry, online_store)

    return make


@pytest.fixture(scope="session")
def churn_repo(make_repo: MakeRepo) -> Iterator[FeastRepo]:
    """Applied and materialized over the whole two days; tests must not change it."""
    repo = make_repo()
    repo.apply(churn_definitions())
    for view in churn_definitions().views:
        repo.materialize(view.ref, T0, END)
    yield repo
    repo.close()


def write_source(repo: FeastRepo, frame: pd.DataFrame) -> Path:
    path = repo.repo_path / "user_stats.parquet"
    frame.to_parquet(path, index=False)
    return path


def plain_store(root: Path, online_store: Any) -> feast.FeatureStore:
    """An empty Feast repo in ``root`` with a fresh project (Redis keys are per project)."""
    import uuid

    from feast import FeatureStore, RepoConfig

    return FeatureStore(
        repo_path=str(root),
        config=RepoConfig(
            project=f"mlcp_test_{uuid.uuid4().hex[:10]}",
            provider="local",
            registry=str(root / "registry.db"),
            online_store=online_store,
            entity_key_serialization_version=3,
            repo_path=str(root),
        ),
    )


@contextmanager
def online_store(
    kind: str,
    build: Callable[[Path, Any], feast.FeatureStore],
    root: Path,
    redis_url: str = "",
) -> Iterator[feast.FeatureStore]:
    """``build(root, online_store_config)`` on a SQLite file in ``root`` or on ``redis_url``;
    a Redis project's keys are dropped afterwards."""
    if kind == "sqlite":
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        yield build(root, SqliteOnlineStoreConfig(path=str(root / "online.db")))
        return
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    store = build(
        root, RedisOnlineStoreConfig(connection_string=redis_url.removeprefix("redis://"))
    )
    try:
        yield store
    finally:
        store.teardown()
