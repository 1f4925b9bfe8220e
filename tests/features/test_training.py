from __future__ import annotations

import pandas as pd
import pytest

from features.errors import FeatureNotFound, InvalidDataset
from features.feast_repo import FeastRepo
from features.refs import VersionedRef
from features.training import training_set
from tests.features.conftest import STEP, T0

CHURN_1 = VersionedRef("churn_features", 1)
CHURN_2 = VersionedRef("churn_features", 2)


def entities() -> pd.DataFrame:
    """User 1 just before and just after its second update, user 2 at the end."""
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "event_timestamp": [
                T0 + STEP - pd.Timedelta(minutes=1),
                T0 + STEP + pd.Timedelta(minutes=1),
                T0 + 9 * STEP + pd.Timedelta(hours=1),
            ],
            "churned": [0, 1, 0],
        }
    )


def test_rows_get_the_values_as_of_their_timestamp(churn_repo: FeastRepo) -> None:
    ts = training_set(churn_repo, CHURN_2, entities(), label_columns=("churned",))
    frame = ts.frame
    assert list(frame.columns) == [
        "user_id",
        "event_timestamp",
        "churned",
        "tenure",
        "spend",
        "visits",
        "score",
    ]
    assert frame["tenure"].tolist() == [10, 11, 29]  # before the update: the old value
    assert frame["churned"].tolist() == [0, 1, 0]  # the entity frame's order is kept
    assert ts.features == ("tenure", "spend", "visits", "score")
    assert ts.service == CHURN_2


def test_old_service_versions_train_on_their_own_features(churn_repo: FeastRepo) -> None:
    frame = training_set(churn_repo, CHURN_1, entities()).frame
    assert "score" not in frame.columns
    assert frame["spend"].tolist() == [100.0, 101.0, 209.0]


def test_fingerprint_is_stable_and_reference_stats_cover_only_features(
    churn_repo: FeastRepo,
) -> None:
    first = training_set(churn_repo, CHURN_2, entities(), ("churned",))
    second = training_set(churn_repo, CHURN_2, entities(), ("churned",))
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint.rows == 3
    assert set(first.reference_stats["features"]) == {"tenure", "spend", "visits", "score"}
    assert first.reference_stats["features"]["tenure"]["kind"] == "numeric"
    shuffled = training_set(churn_repo, CHURN_2, entities().iloc[::-1], ("churned",))
    assert shuffled.fingerprint.sha256 != first.fingerprint.sha256


@pytest.mark.parametrize(
    ("drop", "label", "missing"),
    [
        ("user_id", (), "user_id"),
        ("event_timestamp", (), "event_timestamp"),
        (None, ("label",), "label"),
    ],
)
def test_an_entity_frame_without_keys_timestamp_or_labels_is_refused(
    churn_repo: FeastRepo, drop: str | None, label: tuple[str, ...], missing: str
) -> None:
    frame = entities().drop(columns=[drop] if drop else [])
    with pytest.raises(InvalidDataset, match=f"missing columns \\['{missing}'\\]"):
        training_set(churn_repo, CHURN_2, frame, label)


def test_an_unknown_service_is_feature_not_found(churn_repo: FeastRepo) -> None:
    with pytest.raises(FeatureNotFound):
        training_set(churn_repo, VersionedRef("churn_features", 3), entities())
