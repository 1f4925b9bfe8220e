"""What a model version is and where it came from, and the store that keeps it.

The registry declares ``LineageStore``; the control plane implements it on its
database (``controlplane/db/lineage_store.py``) and hands it over, so this
package never imports the control plane.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from registry.process import ProcessIdentity


@dataclass(frozen=True)
class TrainingData:
    """The training set a version was fit on, as data: its fingerprint, not its rows."""

    fingerprint: str
    rows: int
    source: str | None = None
    columns: tuple[str, ...] = ()
    data_check: Mapping[str, Any] | None = None  # a data-quality result, e.g. GX's summary


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version with its full lineage, as the control plane stores it."""

    name: str
    version: int
    state: str
    run_id: str
    model_uri: str  # models:/NAME/VERSION, loads with plain MLflow
    source_uri: str  # the logged model the version points at (models:/m-...)
    artifact_sha256: str
    model_format: str  # "pt2" (torch.export) or "pickle"
    signature: Mapping[str, Any]
    registered_by: str
    registered_at: datetime
    feature_service: str | None = None
    training_data: TrainingData | None = None
    code_version: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    description: str | None = None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    # Per-feature statistics of the training data, for drift detection: see features.reference.
    reference_stats: Mapping[str, Any] | None = None
    # The distribution of its outputs on its evaluation or training set, for prediction
    # drift: ``{"source": "evaluation", "dataset_fingerprint": ..., "output": {...}}``.
    prediction_reference: Mapping[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["registered_at"] = self.registered_at.isoformat()
        out["ref"] = self.ref
        return out


@dataclass(frozen=True)
class PendingRegistration:
    """The intent row written before any MLflow object exists, so a crash leaves a trace."""

    registration_id: str
    name: str
    idempotency_key: str | None
    request_fingerprint: str
    registered_by: str
    owner: ProcessIdentity | None = None  # the registering process, to tell when it is gone


@dataclass(frozen=True)
class Intent:
    """A registration begun and neither completed nor abandoned, and who began it."""

    registration_id: str
    name: str
    created_at: datetime
    idempotency_key: str | None = None
    owner: ProcessIdentity | None = None


class LineageStore(Protocol):
    """Where the registry keeps lineage; implemented by the control plane on its database."""

    def begin(self, pending: PendingRegistration) -> ModelVersion | None:
        """Record the intent to register.

        Returns the existing version when the idempotency key was already used for the
        same request fingerprint; raises IdempotencyConflict for a different fingerprint
        and RegistrationInProgress (carrying the holder's `Intent`) while another
        registration holds the key.
        """
        ...

    def complete(self, registration_id: str, version: ModelVersion) -> None:
        """Turn the intent into the version's lineage row, with its audit entry, atomically."""
        ...

    def abandon(self, registration_id: str) -> None:
        """Drop the intent after the steps taken were undone."""
        ...

    def get(self, name: str, version: int) -> ModelVersion | None: ...

    def versions(self, name: str | None = None) -> list[ModelVersion]: ...

    def pending(self) -> list[Intent]:
        """Intents neither completed nor abandoned."""
        ...
