"""FeastOnlineBackend on real Feast repos (SQLite and Redis online stores), built with Feast's
own API: entity ``user``, view ``user_stats__v1`` (3 features), service ``churn_features__v1``.
Applying and materializing costs seconds, so each store's repo is built once per module."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from features.client import BackendUnavailable, CacheConfig, FeatureClient
from features.errors import FeatureNotFound, OnlineStoreUnavailable
from features.generations import MemoryGenerations
from features.online_feast import FeastOnlineBackend, view_freshness_s
from features.refs import VersionedRef
from tests.features.conftest import online_store, plain_store

if TYPE_CHECKING:
    import feast

CHURN = VersionedRef("churn_features", 1)
SCORES = VersionedRef("scores", 1)
NOW = datetime.now(UTC).replace(microsecond=0)
USERS = (1, 2, 3, 4, 5)


def stats_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": list(USERS),
            "orders_7d": [10 * u for u in USERS],
            "spend_7d": [1.5 * u for u in USERS],
            "sessions_7d": [u + 100 for u in USERS],
            "event_timestamp": [NOW - timedelta(hours=1)] * len(USERS),
        }
    )


def scores_frame(score: float, at: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": list(USERS), "score": [score] * len(USERS), "event_timestamp": [at] * 5}
    )


def build_repo(root: Path, online_store: Any) -> feast.FeatureStore:
    """A Feast repo in ``root``: applied and materialized over the last day."""
    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        Field,
        FileSource,
        ValueType,
    )
    from feast.types import Float32, Float64, Int64

    stats_frame().to_parquet(root / "user_stats.parquet", index=False)
    scores_frame(0.5, NOW - timedelta(hours=2)).to_parquet(root / "scores.parquet", index=False)
    store = plain_store(root, online_store)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    stats = FeatureView(
        name="user_stats__v1",
        entities=[user],
        ttl=timedelta(days=2),
        schema=[
            Field(name="orders_7d", dtype=Int64),
            Field(name="spend_7d", dtype=Float32),
            Field(name="sessions_7d", dtype=Int64),
        ],
        source=FileSource(path=str(root / "user_stats.parquet"), timestamp_field="event_timestamp"),
        tags={"mlcp.freshness_s": "30"},
    )
    scores = FeatureView(
        name="scores__v1",
        entities=[user],
        ttl=timedelta(minutes=10),
        schema=[Field(name="score", dtype=Float64)],
        source=FileSource(path=str(root / "scores.parquet"), timestamp_field="event_timestamp"),
    )
    churn = FeatureService(name="churn_features__v1", features=[stats])
    scores_service = FeatureService(name="scores__v1", features=[scores])
    store.apply([user, stats, scores, churn, scores_service])
    store.materialize(NOW - timedelta(days=1), NOW)
    return store


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[feast.FeatureStore]:
    with online_store("sqlite", build_repo, tmp_path_factory.mktemp("feast_sqlite")) as store:
        yield store


@pytest.fixture(scope="module")
def redis_store(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[feast.FeatureStore]:
    root = tmp_path_factory.mktemp("feast_redis")
    with online_store("redis", build_repo, root, redis_url) as store:
        yield store


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> feast.FeatureStore:
    return request.getfixturevalue(f"{request.param}_store")


def expected(user: int) -> dict[str, Any]:
    return {"orders_7d": 10 * user, "spend_7d": 1.5 * user, "sessions_7d": user + 100}


def test_reads_features_by_plain_name_and_unknown_entities_as_none(
    store: feast.FeatureStore,
) -> None:
    backend = FeastOnlineBackend(store)
    rows = backend.read(CHURN, [{"user_id": 2}, {"user_id": 999}, {"user_id": 1}])
    assert rows == [expected(2), None, expected(1)]


def test_views_and_freshness_come_from_the_feast_definitions(store: feast.FeatureStore) -> None:
    backend = FeastOnlineBackend(store)
    assert backend.views(CHURN) == ["user_stats__v1"]
    assert backend.freshness_s(CHURN) == 30.0  # the mlcp.freshness_s tag
    assert backend.freshness_s(SCORES) == 600.0  # no tag: the view's TTL


def test_view_freshness_prefers_the_tag_then_the_ttl() -> None:
    assert view_freshness_s({"mlcp.freshness_s": "45"}, timedelta(hours=1)) == 45.0
    assert view_freshness_s({}, timedelta(hours=1)) == 3600.0
    assert view_freshness_s({}, timedelta(0)) is None  # Feast's 0: no expiry
    assert view_freshness_s({}, None) is None


def test_unknown_service_is_feature_not_found(store: feast.FeatureStore) -> None:
    backend = FeastOnlineBackend(store)
    with pytest.raises(FeatureNotFound, match="'nope@1' is not registered"):
        backend.read(VersionedRef("nope", 1), [{"user_id": 1}])
    with pytest.raises(FeatureNotFound):
        FeatureClient(backend, MemoryGenerations()).get("nope@1", [{"user_id": 1}])


def test_client_over_feast_fetches_once_then_hits(store: feast.FeatureStore) -> None:
    client = FeatureClient(FeastOnlineBackend(store), MemoryGenerations())
    first = client.get("churn_features@1", [{"user_id": 3}, {"user_id": 999}])
    assert [row.status for row in first.rows] == ["fetched", "missing"]
    assert first.values == [expected(3), None]
    second = client.get("churn_features@1", [{"user_id": 999}, {"user_id": 3}, {"user_id": 4}])
    assert [row.status for row in second.rows] == ["missing", "hit", "fetched"]
    assert second.values == [None, expected(3), expected(4)]


def test_a_materialization_lands_and_the_client_refetches(
    sqlite_store: feast.FeatureStore,
) -> None:
    root = Path(sqlite_store.config.repo_path)
    gens = MemoryGenerations()
    now = [0.0]
    client = FeatureClient(
        FeastOnlineBackend(sqlite_store),
        gens,
        CacheConfig(generation_check_s=0.5),
        clock=lambda: now[0],
    )
    assert client.get("scores@1", [{"user_id": 1}]).values == [{"score": 0.5}]

    scores_frame(0.9, NOW - timedelta(minutes=30)).to_parquet(root / "scores.parquet", index=False)
    sqlite_store.materialize(NOW - timedelta(hours=1), NOW, feature_views=["scores__v1"])
    gens.bump("scores__v1")  # what the materializer does after writing
    assert client.get("scores@1", [{"user_id": 1}]).values == [{"score": 0.5}]  # not checked yet
    now[0] += 0.5
    row = client.get("scores@1", [{"user_id": 1}]).rows[0]
    assert (row.status, row.values) == ("fetched", {"score": 0.9})


def broken_copy(store: feast.FeatureStore, online_store: Any) -> feast.FeatureStore:
    """The same registry and project, but an online store that can't be reached."""
    from feast import FeatureStore, RepoConfig

    root = Path(store.config.repo_path)
    config = RepoConfig(
        project=store.project,
        provider="local",
        registry=str(root / "registry.db"),
        online_store=online_store,
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    return FeatureStore(repo_path=str(root), config=config)


def test_unreachable_sqlite_is_backend_unavailable(
    sqlite_store: feast.FeatureStore, tmp_path: Path
) -> None:
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    down = broken_copy(sqlite_store, SqliteOnlineStoreConfig(path=str(tmp_path / "no" / "x.db")))
    with pytest.raises(BackendUnavailable, match="online store of churn_features@1: Operational"):
        FeastOnlineBackend(down).read(CHURN, [{"user_id": 1}])


def test_unreachable_redis_is_backend_unavailable_and_the_client_serves_stale(
    redis_store: feast.FeatureStore,
) -> None:
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    backend = FeastOnlineBackend(redis_store)
    now = [0.0]
    client = FeatureClient(
        backend, MemoryGenerations(), CacheConfig(default_ttl_s=10), clock=lambda: now[0]
    )
    client.get("churn_features@1", [{"user_id": 1}])
    backend.store = broken_copy(
        redis_store, RedisOnlineStoreConfig(connection_string="127.0.0.1:1")
    )
    now[0] += 60
    row = client.get("churn_features@1", [{"user_id": 1}]).rows[0]
    assert (row.status, row.values, row.age_s) == ("stale", expected(1), 60.0)
    with pytest.raises(OnlineStoreUnavailable, match="ConnectionError"):
        client.get("churn_features@1", [{"user_id": 2}])
