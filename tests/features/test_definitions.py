from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from features.definitions import (
    Definitions,
    EntityDef,
    FeatureServiceDef,
    FeatureViewDef,
    Field,
    load_definitions,
)
from features.errors import InvalidDefinition
from features.refs import VersionedRef
from tests.features.conftest import churn_definitions

FILE = """
from features.definitions import Definitions, EntityDef, FeatureServiceDef, FeatureViewDef, Field

user = EntityDef("user", join_key="user_id")
stats = FeatureViewDef(
    "user_stats", 1, entity="user", source="data/user_stats.parquet",
    fields=[Field("tenure", "int64", nullable=False), Field("spend", "float32")],
)
DEFINITIONS = Definitions(
    entities=[user], views=[stats], services=[FeatureServiceDef("churn", 1, ["user_stats@1"])]
)
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "features_def.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_load_runs_the_file_and_resolves_sources_against_its_folder(tmp_path: Path) -> None:
    defs = load_definitions(write(tmp_path, FILE))
    (view,) = defs.views
    assert view.ref == VersionedRef("user_stats", 1)
    assert view.source == str(tmp_path.resolve() / "data" / "user_stats.parquet")
    assert defs.services[0].ref == VersionedRef.parse("churn@1")
    assert view.max_staleness_s == view.ttl_s == 86400


def test_schema_digest_ignores_source_ttl_and_expectations() -> None:
    view = churn_definitions().views[0]
    same = dataclasses.replace(
        view,
        source="elsewhere.parquet",
        ttl_s=60,
        expectations=[{"type": "expect_column_to_exist", "kwargs": {"column": "tenure"}}],
        fields=list(reversed(view.fields)),
    )
    assert same.schema_sha256() == view.schema_sha256()
    for changed in (
        dataclasses.replace(view, fields=[*view.fields[:2], Field("visits", "int64")]),
        dataclasses.replace(view, fields=[Field("tenure", "int64"), *view.fields[1:]]),
        dataclasses.replace(view, fields=view.fields[:2]),
        dataclasses.replace(view, timestamp_field="ts"),
        dataclasses.replace(view, entity="account"),
    ):
        assert changed.schema_sha256() != view.schema_sha256()


def test_a_service_may_name_a_whole_view_and_some_of_its_fields() -> None:
    defs = churn_definitions()
    assert defs.service_features(defs.services[1]) == {
        VersionedRef("user_stats", 2): ["tenure", "spend", "visits", "score"]
    }


def _bad(defs: Definitions, **changes: object) -> Definitions:
    return dataclasses.replace(defs, **changes)


D = churn_definitions()
V1, V2 = D.views
S1, S2 = D.services


@pytest.mark.parametrize(
    ("defs", "names"),
    [
        (_bad(D, views=[dataclasses.replace(V1, entity="account")]), "field 'entity'"),
        (_bad(D, views=[V1, V2, V1]), "feature view user_stats@1"),
        (_bad(D, services=[S1, S1]), "feature service churn_features@1"),
        (_bad(D, entities=[*D.entities, *D.entities]), "entity user"),
        (
            _bad(D, views=[dataclasses.replace(V1, fields=[Field("x", "float16")])]),  # type: ignore[arg-type]
            "field 'x'",
        ),
        (
            _bad(D, views=[dataclasses.replace(V1, freshness_s=90000)], services=[]),
            "field 'freshness_s'",
        ),
        (_bad(D, views=[V1], services=[S2]), "feature 'user_stats@2:tenure'"),
        (
            _bad(D, services=[FeatureServiceDef("s", 1, ["user_stats@1:score"])]),
            "feature 'user_stats@1:score'",
        ),
        (_bad(D, views=[dataclasses.replace(V1, version=0)], services=[]), "field 'version'"),
        (_bad(D, views=[dataclasses.replace(V1, version="1")], services=[]), "field 'version'"),  # type: ignore[arg-type]
        (_bad(D, views=[dataclasses.replace(V1, name="User-Stats")], services=[]), "field 'name'"),
        (_bad(D, entities=[EntityDef("user", join_key="user id")]), "field 'join_key'"),
        (
            _bad(
                D, views=[dataclasses.replace(V1, fields=[*V1.fields, Field("user_id", "int64")])]
            ),
            "field 'user_id'",
        ),
        (
            _bad(
                D,
                services=[
                    FeatureServiceDef("s", 1, ["user_stats@1:tenure", "user_stats@2:tenure"])
                ],
            ),
            "feature 'tenure'",
        ),
        (
            _bad(
                D,
                views=[dataclasses.replace(V1, expectations=[{"type": "not_an_expectation"}]), V2],
            ),
            "expectations[0]",
        ),
    ],
)
def test_invalid_definitions_name_the_object_and_field(defs: Definitions, names: str) -> None:
    with pytest.raises(InvalidDefinition) as raised:
        defs.validate()
    assert names in raised.value.what


def test_the_churn_definitions_are_valid() -> None:
    churn_definitions().validate()


def test_load_without_definitions_says_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition, match="DEFINITIONS = Definitions"):
        load_definitions(write(tmp_path, "X = 1\n"))


def test_load_reports_a_file_that_fails_to_run(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition, match="running it failed: NameError"):
        load_definitions(write(tmp_path, "DEFINITIONS = nothing\n"))


def test_load_validates_up_front(tmp_path: Path) -> None:
    text = FILE.replace('entity="user"', 'entity="account"')
    with pytest.raises(InvalidDefinition, match="unknown entity 'account'"):
        load_definitions(write(tmp_path, text))


def test_view_round_trips_through_a_dict() -> None:
    view = churn_definitions().views[1]
    assert FeatureViewDef.from_dict(view.to_dict()) == view
