"""The registry's LineageStore, implemented on the control-plane database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import ModelVersionRow
from registry import (
    IdempotencyConflict,
    ModelVersion,
    PendingRegistration,
    RegistrationInProgress,
    RegistryError,
    TrainingData,
)
from registry.lineage import Intent
from registry.process import ProcessIdentity

PENDING, COMPLETE = "pending", "complete"


class DbLineageStore:
    """Lineage rows in ``model_versions``; completion writes the audit row in the same commit."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = audit.utcnow
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def begin(self, pending: PendingRegistration) -> ModelVersion | None:
        owner = pending.owner
        for _ in range(2):  # a concurrent insert of the same key: look again once
            try:
                with self.sessions.begin() as session:
                    existing = self._by_key(session, pending.name, pending.idempotency_key)
                    if existing is not None:
                        return _reuse(existing, pending)
                    session.add(
                        ModelVersionRow(
                            registration_id=pending.registration_id,
                            model_name=pending.name,
                            status=PENDING,
                            state="registering",
                            registered_by=pending.registered_by,
                            idempotency_key=pending.idempotency_key,
                            request_fingerprint=pending.request_fingerprint,
                            created_at=self.clock(),
                            owner_host=owner.host if owner else None,
                            owner_pid=owner.pid if owner else None,
                            owner_started=owner.started if owner else None,
                        )
                    )
                return None
            except IntegrityError:
                continue
        raise RegistrationInProgress(pending.name, pending.idempotency_key or "")

    def complete(self, registration_id: str, version: ModelVersion) -> None:
        with self.sessions.begin() as session:
            row = session.execute(
                select(ModelVersionRow)
                .where(ModelVersionRow.registration_id == registration_id)
                .with_for_update()
            ).scalar_one_or_none()
            if row is None or row.status != PENDING:
                raise RegistryError(
                    f"registration {registration_id} is no longer pending; it was abandoned"
                )
            _fill(row, version)
            row.status, row.completed_at = COMPLETE, version.registered_at
            audit.append(
                session,
                actor=version.registered_by,
                action="model.register",
                subject=version.ref,
                before=None,
                after={"state": version.state, "version": version.version},
                reason="registered",
                evidence={
                    "run_id": version.run_id,
                    "model_uri": version.model_uri,
                    "artifact_sha256": version.artifact_sha256,
                    "feature_service": version.feature_service,
                    "dataset_fingerprint": (
                        version.training_data.fingerprint if version.training_data else None
                    ),
                    "code_version": version.code_version,
                    "idempotency_key": version.idempotency_key,
                },
                clock=self.clock,
            )

    def abandon(self, registration_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                delete(ModelVersionRow).where(
                    ModelVersionRow.registration_id == registration_id,
                    ModelVersionRow.status == PENDING,
                )
            )

    def get(self, name: str, version: int) -> ModelVersion | None:
        with self.sessions() as session:
            row = session.execute(
                select(ModelVersionRow).where(
                    ModelVersionRow.model_name == name,
                    ModelVersionRow.version == version,
                    ModelVersionRow.status == COMPLETE,
                )
            ).scalar_one_or_none()
            return None if row is None else _to_version(row)

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        query = select(ModelVersionRow).where(ModelVersionRow.status == COMPLETE)
        if name is not None:
            query = query.where(ModelVersionRow.model_name == name)
        query = query.order_by(ModelVersionRow.model_name, ModelVersionRow.version)
        with self.sessions() as session:
            return [_to_version(r) for r in session.execute(query).scalars()]

    def pending(self) -> list[Intent]:
        """Intents never completed nor abandoned (a killed process, or one still running)."""
        with self.sessions() as session:
            rows = session.execute(
                select(ModelVersionRow).where(ModelVersionRow.status == PENDING)
            ).scalars()
            return [_intent(r) for r in rows]

    @staticmethod
    def _by_key(session: Session, name: str, key: str | None) -> ModelVersionRow | None:
        if key is None:
            return None
        return session.execute(
            select(ModelVersionRow).where(
                ModelVersionRow.model_name == name, ModelVersionRow.idempotency_key == key
            )
        ).scalar_one_or_none()


def _reuse(row: ModelVersionRow, pending: PendingRegistration) -> ModelVersion:
    key = pending.idempotency_key or ""
    if row.request_fingerprint != pending.request_fingerprint:
        raise IdempotencyConflict(pending.name, key, row.version)
    if row.status != COMPLETE:
        raise RegistrationInProgress(pending.name, key, _intent(row))
    return _to_version(row)


def _intent(row: ModelVersionRow) -> Intent:
    owner = None
    if row.owner_host is not None and row.owner_pid is not None:
        owner = ProcessIdentity(row.owner_host, row.owner_pid, row.owner_started)
    return Intent(
        registration_id=row.registration_id,
        name=row.model_name,
        created_at=audit.as_utc(row.created_at),
        idempotency_key=row.idempotency_key,
        owner=owner,
    )


def _fill(row: ModelVersionRow, v: ModelVersion) -> None:
    td = v.training_data
    row.version = v.version
    row.state = v.state
    row.run_id = v.run_id
    row.model_uri = v.model_uri
    row.source_uri = v.source_uri
    row.artifact_sha256 = v.artifact_sha256
    row.model_format = v.model_format
    row.signature = dict(v.signature)
    row.feature_service = v.feature_service
    row.dataset_fingerprint = td.fingerprint if td else None
    row.dataset_rows = td.rows if td else None
    row.dataset_source = td.source if td else None
    row.dataset_columns = list(td.columns) if td else None
    row.data_check = dict(td.data_check) if td and td.data_check is not None else None
    row.code_version = v.code_version
    row.params = dict(v.params)
    row.metrics = dict(v.metrics)
    row.description = v.description
    row.reference_stats = dict(v.reference_stats) if v.reference_stats is not None else None
    row.prediction_reference = (
        dict(v.prediction_reference) if v.prediction_reference is not None else None
    )


def _to_version(row: ModelVersionRow) -> ModelVersion:
    if row.version is None or not (row.run_id and row.model_uri and row.source_uri):
        raise RegistryError(f"lineage row {row.registration_id} is incomplete")
    training = None
    if row.dataset_fingerprint is not None:
        training = TrainingData(
            fingerprint=row.dataset_fingerprint,
            rows=row.dataset_rows or 0,
            source=row.dataset_source,
            columns=tuple(row.dataset_columns or ()),
            data_check=row.data_check,
        )
    registered_at = audit.as_utc(row.completed_at or row.created_at)
    return ModelVersion(
        name=row.model_name,
        version=row.version,
        state=row.state,
        run_id=row.run_id,
        model_uri=row.model_uri,
        source_uri=row.source_uri,
        artifact_sha256=row.artifact_sha256 or "",
        model_format=row.model_format or "",
        signature=row.signature or {},
        registered_by=row.registered_by,
        registered_at=registered_at,
        feature_service=row.feature_service,
        training_data=training,
        code_version=row.code_version,
        params=row.params or {},
        metrics=row.metrics or {},
        description=row.description,
        idempotency_key=row.idempotency_key,
        request_fingerprint=row.request_fingerprint,
        reference_stats=row.reference_stats,
        prediction_reference=row.prediction_reference,
    )
