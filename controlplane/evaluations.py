"""Evaluating model versions on labelled data; the metrics go to MLflow and ``mlcp_evaluations``.

A candidate is evaluated together with its model's champion on the same rows (the same
dataset fingerprint), so a champion gate compares like with like. The candidate's outputs on
those rows become its prediction reference (what prediction drift compares live outputs
with), replacing the one taken from its training rows at registration.

    candidate, champion = cp.evaluations.evaluate("churn@3", Path("eval.parquet"), "churned")
    cp.evaluations.latest("churn", 3, candidate.dataset_fingerprint)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import EvaluationRow, ModelRow, ModelVersionRow
from controlplane.references import prediction_reference
from registry import InvalidEvaluationData, ModelRef, ModelVersion, Registrar
from registry.evaluation import Evaluation, Task, check_task, evaluate_frame, feature_matrix

if TYPE_CHECKING:
    import pandas as pd

    from features import DatasetFingerprint

Progress = Callable[[str], None]


def _no_progress(_: str) -> None:
    pass


@dataclass(frozen=True)
class _Dataset:
    """One labelled frame and how every version is evaluated on it."""

    frame: pd.DataFrame
    fingerprint: DatasetFingerprint
    source: str
    label: str
    task: Task
    feature_columns: Sequence[str] | None


class EvaluationService:
    """Evaluates versions on labelled files and keeps the results by dataset fingerprint.

    service = EvaluationService(cp.sessions, cp.registry, actor="ci")
    candidate, champion = service.evaluate("churn@3", Path("eval.parquet"), "churned")
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registrar: Registrar,
        actor: str,
        clock: Callable[[], datetime] = audit.utcnow,
    ) -> None:
        self.sessions = sessions
        self.registrar = registrar
        self.actor = actor
        self.clock = clock

    def evaluate(
        self,
        ref: ModelRef | str,
        data: Path,
        label: str,
        task: Task = "classification",
        feature_columns: Sequence[str] | None = None,
        *,
        actor: str | None = None,
        progress: Progress = _no_progress,
    ) -> tuple[Evaluation, Evaluation | None]:
        """Evaluate ``ref`` on ``data``, then its model's champion (if another version) on the
        same rows. Returns ``(candidate, champion or None)``; both are stored and logged."""
        from features import fingerprint_frame, read_dataset

        check_task(task)
        candidate = self.registrar.get(ref)
        progress(f"reading {data}")
        frame = read_dataset(data)
        feature_matrix(frame, label, feature_columns)  # bad data fails before any model loads
        fingerprint = fingerprint_frame(frame)
        progress(f"dataset sha256 {fingerprint.sha256[:12]}, {fingerprint.rows} rows")
        # Absolute: gates read the rows back later, from whatever directory they run in.
        dataset = _Dataset(frame, fingerprint, str(data.resolve()), label, task, feature_columns)
        who = actor or self.actor
        candidate_eval = self._evaluate_version(candidate, dataset, who, progress, outputs=True)

        champion_version = self._champion_version(candidate.name)
        if champion_version is None or champion_version == candidate.version:
            return candidate_eval, None
        champion = self.registrar.get(ModelRef(candidate.name, version=champion_version))
        progress(f"evaluating the champion {champion.ref} on the same rows")
        try:
            champion_eval = self._evaluate_version(champion, dataset, who, progress)
        except InvalidEvaluationData as exc:
            raise InvalidEvaluationData(
                f"the champion {champion.ref}: {exc.why} ({candidate.ref}'s evaluation is "
                "stored; compare on data both versions accept)",
                exc.column,
            ) from exc
        return candidate_eval, champion_eval

    def latest(
        self, name: str, version: int, dataset_fingerprint: str | None = None
    ) -> Evaluation | None:
        """The newest evaluation of ``name@version``, optionally on that exact dataset."""
        query = select(EvaluationRow).where(
            EvaluationRow.model_name == name, EvaluationRow.version == version
        )
        if dataset_fingerprint is not None:
            query = query.where(EvaluationRow.dataset_fingerprint == dataset_fingerprint)
        with self.sessions() as session:
            row = session.execute(
                query.order_by(EvaluationRow.id.desc()).limit(1)
            ).scalar_one_or_none()
        return None if row is None else _from_row(row)

    # -- internals ----------------------------------------------------------------------------
    def _evaluate_version(
        self,
        version: ModelVersion,
        dataset: _Dataset,
        actor: str,
        progress: Progress,
        outputs: bool = False,
    ) -> Evaluation:
        from controlplane.artifacts import load_verified

        backend = self.registrar.backend
        progress(f"loading {version.ref}")
        model = load_verified(backend, self.sessions, version, actor)
        progress(f"evaluating {version.ref}")
        metrics = evaluate_frame(
            model, dataset.frame, dataset.label, dataset.task, dataset.feature_columns
        )
        reference = None
        if outputs:
            features, _, _ = feature_matrix(dataset.frame, dataset.label, dataset.feature_columns)
            reference = prediction_reference(
                model, features, "evaluation", dataset.fingerprint.sha256
            )
        fp = dataset.fingerprint
        run_id = backend.log_evaluation(
            version.name,
            version.version,
            version.source_uri,
            metrics,
            fp.sha256,
            fp.rows,
            dataset.source,
        )
        evaluation = Evaluation(
            name=version.name,
            version=version.version,
            task=dataset.task,
            dataset_fingerprint=fp.sha256,
            dataset_rows=fp.rows,
            label_column=dataset.label,
            metrics=metrics,
            dataset_source=dataset.source,
            mlflow_run_id=run_id,
        )
        with self.sessions.begin() as session:
            session.add(_to_row(evaluation, actor, self.clock()))
            if reference is not None:
                _record_prediction_reference(session, version, reference, actor, self.clock)
        progress(f"evaluated {version.ref}: MLflow run {run_id}")
        return evaluation

    def _champion_version(self, name: str) -> int | None:
        with self.sessions() as session:
            row = session.get(ModelRow, name)
            return None if row is None else row.champion_version


def _record_prediction_reference(
    session: Session,
    version: ModelVersion,
    reference: dict[str, object],
    actor: str,
    clock: Callable[[], datetime],
) -> None:
    """The version's outputs on its evaluation rows become its prediction reference."""
    row = session.execute(
        select(ModelVersionRow).where(
            ModelVersionRow.model_name == version.name,
            ModelVersionRow.version == version.version,
        )
    ).scalar_one()
    before = row.prediction_reference
    row.prediction_reference = reference
    keys = ("source", "dataset_fingerprint", "rows")
    audit.append(
        session,
        actor=actor,
        action="model.prediction_reference",
        subject=version.ref,
        before={k: before.get(k) for k in keys} if before else None,
        after={k: reference.get(k) for k in keys},
        reason="the model's outputs on its evaluation rows, for prediction drift",
        clock=clock,
    )


def _to_row(evaluation: Evaluation, actor: str, now: datetime) -> EvaluationRow:
    return EvaluationRow(
        model_name=evaluation.name,
        version=evaluation.version,
        dataset_fingerprint=evaluation.dataset_fingerprint,
        dataset_rows=evaluation.dataset_rows,
        dataset_source=evaluation.dataset_source,
        task=evaluation.task,
        label_column=evaluation.label_column,
        metrics=dict(evaluation.metrics),
        mlflow_run_id=evaluation.mlflow_run_id,
        created_by=actor,
        created_at=now,
    )


def _from_row(row: EvaluationRow) -> Evaluation:
    return Evaluation(
        name=row.model_name,
        version=row.version,
        task=cast(Task, row.task),
        dataset_fingerprint=row.dataset_fingerprint,
        dataset_rows=row.dataset_rows,
        label_column=row.label_column,
        metrics=dict(row.metrics),
        dataset_source=row.dataset_source,
        mlflow_run_id=row.mlflow_run_id,
    )
