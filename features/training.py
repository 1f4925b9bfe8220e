"""Training sets from Feast's point-in-time join, with what lineage and drift need.

ts = training_set(repo, VersionedRef.parse("churn_features@2"), entities, ("churned",))
ts.frame          # entity columns, labels, then the service's features (plain names)
ts.fingerprint    # DatasetFingerprint for lineage
ts.reference_stats  # per-feature statistics for drift
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.errors import InvalidDataset
from features.fingerprint import DatasetFingerprint, fingerprint_frame
from features.reference import reference_statistics
from features.refs import VersionedRef

if TYPE_CHECKING:
    import pandas as pd

    from features.feast_repo import FeastRepo

TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class TrainingSet:
    """Rows as of each entity row's ``event_timestamp``, in the entity frame's order."""

    frame: pd.DataFrame
    fingerprint: DatasetFingerprint
    reference_stats: dict[str, Any]
    service: VersionedRef
    features: tuple[str, ...] = ()


def training_set(
    repo: FeastRepo,
    service: VersionedRef,
    entity_df: pd.DataFrame,
    label_columns: tuple[str, ...] = (),
) -> TrainingSet:
    """Join the service's features onto ``entity_df`` (join keys, ``event_timestamp``,
    labels); each row gets the values as they were at its timestamp."""
    info = repo.service(service)
    needed = [*info.join_keys, TIMESTAMP, *label_columns]
    missing = [c for c in needed if c not in entity_df.columns]
    if missing:
        raise InvalidDataset(
            "entity frame",
            f"missing columns {missing}; {service} needs {[*info.join_keys, TIMESTAMP]}"
            + (f" and the labels {list(label_columns)}" if label_columns else ""),
        )
    clashes = [c for c in entity_df.columns if c in info.feature_names]
    if clashes:
        raise InvalidDataset(
            "entity frame", f"columns {clashes} are also features of {service}; rename them"
        )
    frame = repo.historical(service, entity_df)
    return TrainingSet(
        frame=frame,
        fingerprint=fingerprint_frame(frame),
        # Exactly the service's features, in its order: what a model pinned to it takes.
        reference_stats=reference_statistics(frame, columns=info.feature_names),
        service=service,
        features=info.feature_names,
    )
