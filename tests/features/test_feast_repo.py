from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from features.definitions import Field
from features.errors import (
    DataQualityFailed,
    DefinitionConflict,
    FeatureNotFound,
    InvalidDataset,
    InvalidDefinition,
    OnlineStoreUnavailable,
)
from features.feast_repo import FeastRepo
from features.refs import VersionedRef
from tests.features.conftest import (
    END,
    STEP,
    T0,
    MakeRepo,
    churn_definitions,
    source_frame,
    write_source,
)

CHURN_1 = VersionedRef("churn_features", 1)
CHURN_2 = VersionedRef("churn_features", 2)
STATS_1 = VersionedRef("user_stats", 1)
STATS_2 = VersionedRef("user_stats", 2)


def test_apply_registers_every_version_and_reapplying_is_a_no_op(churn_repo: FeastRepo) -> None:
    report = churn_repo.apply(churn_definitions())
    assert not report.changed
    assert set(report.unchanged) == {
        "entity user",
        "view user_stats@1",
        "view user_stats@2",
        "service churn_features@1",
        "service churn_features@2",
    }
    assert [v.ref for v in churn_repo.views()] == [STATS_1, STATS_2]
    assert [s.ref for s in churn_repo.services()] == [CHURN_1, CHURN_2]


def test_views_and_services_read_back_from_a_fresh_repo(churn_repo: FeastRepo) -> None:
    again = FeastRepo(churn_repo.repo_path, "churn", "registry.db", "online.db")
    view = again.view(STATS_2)
    assert view.fields == tuple(churn_definitions().views[1].fields)
    assert (view.freshness_s, view.ttl_s, view.join_key) == (3600, 86400, "user_id")
    assert view.tags["mlcp.schema_sha256"] == churn_definitions().views[1].schema_sha256()
    assert view.tags["mlcp.freshness_s"] == "3600"
    service = again.service(CHURN_2)
    assert service.feature_names == ("tenure", "spend", "visits", "score")
    assert service.features[0] == "user_stats@2:tenure"
    assert (service.views, service.join_keys, service.freshness_s) == (
        (STATS_2,),
        ("user_id",),
        3600,
    )
    assert again.service(CHURN_1).freshness_s == 86400


def test_unknown_versions_are_feature_not_found(churn_repo: FeastRepo) -> None:
    with pytest.raises(FeatureNotFound, match="'churn_features@9' is not registered"):
        churn_repo.service(VersionedRef("churn_features", 9))
    with pytest.raises(FeatureNotFound, match="feature view 'user_stats@9'"):
        churn_repo.view(VersionedRef("user_stats", 9))
    with pytest.raises(FeatureNotFound):
        churn_repo.online(VersionedRef("churn_features", 9), [{"user_id": 1}])


def test_both_versions_read_online_after_materializing(churn_repo: FeastRepo) -> None:
    rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 99}]
    old = churn_repo.online(CHURN_1, rows)
    new = churn_repo.online(CHURN_2, rows)
    assert old == {
        "user_id": [1, 2, 99],
        "tenure": [19, 29, None],
        "spend": [109.0, 209.0, None],
        "visits": [9, 9, None],
    }
    assert new["tenure"] == [19, 29, None]
    assert new["score"] == [pytest.approx(1.9), pytest.approx(2.9), None]


def test_a_changed_schema_under_the_same_version_applies_nothing(churn_repo: FeastRepo) -> None:
    defs = churn_definitions()
    v1, v2 = defs.views
    v1_changed = dataclasses.replace(v1, fields=[*v1.fields[:2], Field("visits", "float64")])
    v3 = dataclasses.replace(v2, version=3)
    changed = dataclasses.replace(defs, views=[v3, v2, v1_changed])  # v3 is checked first
    with pytest.raises(DefinitionConflict) as raised:
        churn_repo.apply(changed)
    assert raised.value.ref == "user_stats@1"
    assert raised.value.differences == ["field 'visits' dtype int32 -> float64"]
    assert VersionedRef("user_stats", 3) not in {v.ref for v in churn_repo.views()}
    assert churn_repo.view(STATS_1).fields == tuple(v1.fields)


def test_a_service_exposing_one_name_twice_is_refused(churn_repo: FeastRepo) -> None:
    defs = churn_definitions()
    service = dataclasses.replace(
        defs.services[0], version=7, features=["user_stats@1:tenure", "user_stats@2:tenure"]
    )
    with pytest.raises(InvalidDefinition, match="comes from both"):
        churn_repo.apply(dataclasses.replace(defs, services=[service]))


def test_materialize_refuses_bad_data_and_keeps_online_values(make_repo: MakeRepo) -> None:
    repo = make_repo(project="refuse")
    repo.apply(churn_definitions())
    lines: list[str] = []
    result = repo.materialize(STATS_2, T0, T0 + 5 * STEP, progress=lines.append)
    assert result.rows == 30
    assert result.report.success
    assert lines[-1] == "user_stats@2: online store updated"
    before = repo.online(CHURN_2, [{"user_id": 1}])
    assert before["spend"] == [105.0]

    _refused_twice(repo)
    assert repo.online(CHURN_2, [{"user_id": 1}]) == before


def test_settings_outside_the_schema_update_in_place(make_repo: MakeRepo) -> None:
    repo = make_repo(project="update")
    repo.apply(churn_definitions())
    repo.materialize(STATS_1, T0, END)
    defs = churn_definitions()
    stricter = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "visits", "min_value": 0},
    }
    v1 = dataclasses.replace(defs.views[0], ttl_s=7200, expectations=[stricter])
    report = repo.apply(dataclasses.replace(defs, views=[v1, defs.views[1]]))
    assert report.updated == ("view user_stats@1",)
    assert not report.created
    with FeastRepo(repo.repo_path, "update", "registry.db", "online.db") as again:
        assert again.view(STATS_1).definition.expectations == [stricter]
        assert again.view(STATS_1).freshness_s == 7200
        assert again.online(CHURN_1, [{"user_id": 4}])["tenure"] == [49]


def _refused_twice(repo: FeastRepo) -> None:
    """Nulls in a non-null field, then spend out of range: refused, with a report."""
    nulls = source_frame(bump=1000.0)
    nulls.loc[nulls.index[-5:], "tenure"] = None
    write_source(repo, nulls)
    with pytest.raises(DataQualityFailed) as raised:
        repo.materialize(STATS_2, T0, END)
    (failure,) = raised.value.report["failures"]
    assert (failure["column"], failure["unexpected_count"]) == ("tenure", 5)

    out_of_range = source_frame(bump=1000.0)
    out_of_range.loc[out_of_range.index[-1], "spend"] = -1.0
    write_source(repo, out_of_range)
    with pytest.raises(DataQualityFailed, match="expect_column_values_to_be_between") as raised:
        repo.materialize(STATS_2, T0, END)
    assert raised.value.report["failures"][0]["column"] == "spend"
    assert raised.value.report["rows"] == 50


def test_extra_expectations_can_refuse_a_batch(churn_repo: FeastRepo) -> None:
    strict = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "visits", "min_value": 1},
    }
    with pytest.raises(DataQualityFailed, match="user_stats@1"):
        churn_repo.materialize(STATS_1, T0, END, expectations=[strict])


def test_a_reversed_window_is_refused_before_reading(churn_repo: FeastRepo) -> None:
    with pytest.raises(InvalidDataset, match=r"start .* >= end"):
        churn_repo.materialize(STATS_1, END, T0)


def test_importing_the_feature_modules_loads_neither_feast_nor_gx() -> None:
    code = (
        "import sys, features.feast_repo, features.training, features.quality;"
        "print(sorted(m for m in ('feast', 'great_expectations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sqlite_online_store_that_cannot_open_is_unavailable(make_repo: MakeRepo) -> None:
    repo = make_repo(project="broken")
    repo.apply(churn_definitions())
    (repo.repo_path / "a_folder").mkdir()
    broken = FeastRepo(repo.repo_path, "broken", "registry.db", "a_folder")
    with pytest.raises(OnlineStoreUnavailable, match="churn_features@1"):
        broken.online(CHURN_1, [{"user_id": 1}])


def test_redis_online_store_serves_versions_and_keeps_values_on_refusal(
    make_repo: MakeRepo, redis_url: str
) -> None:
    repo = make_repo(project=f"t{uuid.uuid4().hex[:8]}", online_store=redis_url)
    try:
        repo.apply(churn_definitions())
        repo.materialize(STATS_1, T0, END)
        repo.materialize(STATS_2, T0, T0 + 5 * STEP)
        assert repo.online(CHURN_1, [{"user_id": 3}])["tenure"] == [39]
        before = repo.online(CHURN_2, [{"user_id": 3}, {"user_id": 42}])
        assert before["tenure"] == [35, None]
        _refused_twice(repo)
        assert repo.online(CHURN_2, [{"user_id": 3}, {"user_id": 42}]) == before
    finally:
        repo.store.teardown()


def test_redis_that_is_down_is_online_store_unavailable(make_repo: MakeRepo) -> None:
    repo = make_repo(project=f"t{uuid.uuid4().hex[:8]}", online_store="redis://127.0.0.1:1")
    repo.apply(churn_definitions())
    with pytest.raises(OnlineStoreUnavailable, match="online store unavailable for churn"):
        repo.online(CHURN_1, [{"user_id": 1}])


@pytest.fixture
def pg_repo(make_repo: MakeRepo, pg_url: str) -> Iterator[FeastRepo]:
    with make_repo(project="churn", registry=pg_url) as repo:
        yield repo


def test_postgres_sql_registry_keeps_versions_and_conflicts(pg_repo: FeastRepo) -> None:
    assert pg_repo.apply(churn_definitions()).created
    pg_repo.materialize(STATS_1, T0, END)
    with FeastRepo(pg_repo.repo_path, "churn", pg_repo.registry, "online.db") as again:
        assert [s.ref for s in again.services()] == [CHURN_1, CHURN_2]
        assert not again.apply(churn_definitions()).changed
        assert again.online(CHURN_1, [{"user_id": 5}])["tenure"] == [59]

        defs = churn_definitions()
        narrower = dataclasses.replace(defs.views[1], fields=defs.views[1].fields[:3])
        with pytest.raises(DefinitionConflict, match=r"field 'score' removed"):
            again.apply(dataclasses.replace(defs, views=[defs.views[0], narrower], services=[]))


def test_rows_without_the_join_key_are_an_invalid_dataset(churn_repo: FeastRepo) -> None:
    with pytest.raises(InvalidDataset, match=r"entity rows for churn_features@1.*user_id"):
        churn_repo.online(CHURN_1, [{"account": 1}])
