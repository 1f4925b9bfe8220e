"""DirectOnlineBackend against Feast itself: on real SQLite and Redis online stores written by
Feast's materialization, every value and every status the direct read finds equals what
``get_online_features`` answers, for every type mlcp's definitions use, nulls, unknown
entities, repeated entities, and a service over two views (one with a composite key)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from features.client import CacheConfig, FeatureClient
from features.generations import MemoryGenerations
from features.online_direct import DirectOnlineBackend, online_backend
from features.online_feast import FeastOnlineBackend
from features.refs import VersionedRef
from tests.features.conftest import online_store, plain_store

if TYPE_CHECKING:
    import feast

SERVICE = VersionedRef("mixed", 1)
NOW = datetime.now(UTC).replace(microsecond=0)
USERS = (1, 2, 3, 4, 5)
ROWS = [
    {"user_id": u, "country": c}
    for u, c in [(1, "fr"), (2, "de"), (3, "fr"), (99, "fr"), (4, "it"), (1, "fr"), (5, "de")]
]  # 99 is unknown, (4, "it") has no country row, (1, "fr") twice


def write_sources(root: Path) -> None:
    at = [NOW - timedelta(hours=1)] * len(USERS)
    pd.DataFrame(
        {
            "user_id": list(USERS),
            "orders": [10 * u for u in USERS],
            "visits": np.array([u + 1 for u in USERS], dtype=np.int32),
            "spend": [1.5 * u if u != 3 else None for u in USERS],  # a null
            "score": np.array([u / 10 for u in USERS], dtype=np.float32),
            "plan": ["basic", "pro", None, "pro", "basic"],
            "active": [True, False, True, True, False],
            "event_timestamp": at,
        }
    ).to_parquet(root / "users.parquet", index=False)
    pd.DataFrame(
        {
            "user_id": [1, 2, 3, 5],
            "country": ["fr", "de", "fr", "de"],
            "discount": [0.1, 0.2, 0.3, 0.5],
            "event_timestamp": at[:4],
        }
    ).to_parquet(root / "user_country.parquet", index=False)


def build(root: Path, online_store: Any) -> feast.FeatureStore:
    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        Field,
        FileSource,
        ValueType,
    )
    from feast.types import Bool, Float32, Float64, Int32, Int64, String

    write_sources(root)
    store = plain_store(root, online_store)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    country = Entity(name="country", join_keys=["country"], value_type=ValueType.STRING)
    users = FeatureView(
        name="users__v1",
        entities=[user],
        ttl=timedelta(days=2),
        schema=[
            Field(name="orders", dtype=Int64),
            Field(name="visits", dtype=Int32),
            Field(name="spend", dtype=Float64),
            Field(name="score", dtype=Float32),
            Field(name="plan", dtype=String),
            Field(name="active", dtype=Bool),
        ],
        source=FileSource(path=str(root / "users.parquet"), timestamp_field="event_timestamp"),
    )
    by_country = FeatureView(
        name="user_country__v1",
        entities=[user, country],
        ttl=timedelta(days=2),
        schema=[Field(name="discount", dtype=Float64)],
        source=FileSource(
            path=str(root / "user_country.parquet"), timestamp_field="event_timestamp"
        ),
    )
    service = FeatureService(
        name="mixed__v1", features=[users[["orders", "visits", "spend", "score", "plan",
                                           "active"]], by_country]
    )  # fmt: skip
    store.apply([user, country, users, by_country, service])
    store.materialize(NOW - timedelta(days=1), NOW)
    return store


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[feast.FeatureStore]:
    with online_store("sqlite", build, tmp_path_factory.mktemp("direct-sqlite")) as store:
        yield store


@pytest.fixture(scope="module")
def redis_store(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[feast.FeatureStore]:
    with online_store("redis", build, tmp_path_factory.mktemp("direct-redis"), redis_url) as store:
        yield store


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> feast.FeatureStore:
    return request.getfixturevalue(f"{request.param}_store")


def feast_answer(store: feast.FeatureStore, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row and feature: (status is PRESENT, the value), from get_online_features."""
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    response = store.get_online_features(
        features=store.get_feature_service(SERVICE.feast_name), entity_rows=rows
    )
    values = response.to_dict()
    names = list(response.proto.metadata.feature_names.val)
    out: list[dict[str, Any]] = [{} for _ in rows]
    for name, vector in zip(names, response.proto.results, strict=True):
        if name in ("user_id", "country"):
            continue
        for i, status in enumerate(vector.statuses):
            out[i][name] = (status == FieldStatus.PRESENT, values[name][i])
    return out


def direct_answer(store: feast.FeatureStore, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from feast.type_map import feast_value_type_to_python_type

    backend = DirectOnlineBackend(store)
    return [
        {
            name: (
                proto is not None,
                None if proto is None else feast_value_type_to_python_type(proto),
            )
            for name, proto in row.items()
        }
        for row in backend.stored(SERVICE, rows)
    ]


def test_every_value_and_status_matches_get_online_features(store: feast.FeatureStore) -> None:
    expected = feast_answer(store, ROWS)
    got = direct_answer(store, ROWS)

    assert got == expected
    assert expected[0]["orders"] == (True, 10)  # the comparison is not of empty answers
    assert expected[2]["spend"][1] is None  # a stored null
    assert expected[3]["orders"][1] is None  # the unknown entity


def test_rows_match_feasts_own_backend(store: feast.FeatureStore) -> None:
    direct = DirectOnlineBackend(store).read(SERVICE, ROWS)
    via_feast = FeastOnlineBackend(store).read(SERVICE, ROWS)

    assert direct == via_feast
    assert direct[3] is None  # unknown everywhere: a missing row
    assert direct[0] == {"orders": 10, "visits": 2, "spend": 1.5, "score": pytest.approx(0.1),
                         "plan": "basic", "active": True, "discount": 0.1}  # fmt: skip


def test_the_cached_client_reads_misses_directly(store: feast.FeatureStore) -> None:
    backend = online_backend(store)
    assert isinstance(backend, DirectOnlineBackend)
    client = FeatureClient(backend, MemoryGenerations(), CacheConfig())

    first = client.get(SERVICE, ROWS)
    again = client.get(SERVICE, ROWS)

    assert [r.status for r in first] == ["fetched"] * 3 + ["missing"] + ["fetched"] * 3
    assert [r.status for r in again] == ["hit"] * 3 + ["missing"] + ["hit"] * 3
    assert first.values == FeastOnlineBackend(store).read(SERVICE, ROWS)


def test_a_missing_join_key_is_refused(sqlite_store: feast.FeatureStore) -> None:
    with pytest.raises(ValueError, match="join key 'country'"):
        DirectOnlineBackend(sqlite_store).read(SERVICE, [{"user_id": 1}])
