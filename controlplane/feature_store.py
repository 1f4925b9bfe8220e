"""Feast under mlcp: apply versioned definitions, materialize behind a data gate, build
training sets. Every change is recorded (``mlcp_materializations``) and audited, and a
materialization that lands bumps its view's generation so feature caches everywhere drop
what they held.

    cp.features.apply(Path("features.py"), actor="ci")
    cp.features.materialize("user_stats@2", start, end, actor="ci")
    ts = cp.features.training_set("churn_features@1", entity_df, labels=("churned",))
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import MaterializationRow
from controlplane.generations import DbGenerations, bump_in
from controlplane.settings import Settings
from features import DataQualityFailed, VersionedRef

if TYPE_CHECKING:
    import pandas as pd

    from features.client import CacheConfig, FeatureClient
    from features.feast_repo import ApplyReport, FeastRepo, MaterializationResult
    from features.generations import GenerationSource
    from features.metrics import FeatureMetrics
    from features.training import TrainingSet

Progress = Callable[[str], None]


def _silent(_: str) -> None:
    pass


class ManagedFeatures:
    """The control plane's Feast project, built from settings on first use."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime] = audit.utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock

    @cached_property
    def generations(self) -> GenerationSource:
        """Where caches read, and materializations bump, each view's generation:
        ``MLCP_FEATURE_GENERATIONS`` (the control-plane database, or Redis)."""
        where = self.settings.feature_generations
        if where == "database":
            return DbGenerations(self.sessions, self.clock)
        from features.generations import RedisGenerations

        return RedisGenerations(where, namespace=self.settings.feast_project)

    @cached_property
    def repo(self) -> FeastRepo:
        from features.feast_repo import FeastRepo

        s = self.settings
        return FeastRepo(s.home / "feast", s.feast_project, s.feast_registry, s.feast_online_store)

    def apply(self, path: Path, actor: str) -> ApplyReport:
        from features.definitions import load_definitions

        report = self.repo.apply(load_definitions(path))
        if report.changed:
            with self.sessions.begin() as session:
                audit.append(
                    session,
                    actor=actor,
                    action="features.apply",
                    subject=f"feast:{self.settings.feast_project}",
                    after={"created": list(report.created), "updated": list(report.updated)},
                    reason=f"applied {path.name}",
                    evidence={"file": str(path.resolve())},
                    clock=self.clock,
                )
        return report

    def materialize(
        self,
        view: str,
        start: datetime,
        end: datetime,
        actor: str,
        progress: Progress = _silent,
    ) -> MaterializationResult:
        """Materialize ``view`` (name@version) or refuse the batch; either way it is recorded."""
        ref = VersionedRef.parse(view)
        try:
            result = self.repo.materialize(ref, start, end, progress=progress)
        except DataQualityFailed as refused:
            self._record(ref, start, end, refused.report, passed=False, actor=actor)
            raise
        self._record(ref, start, end, result.report.to_dict(), passed=True, actor=actor)
        return result

    def history(self, view: str) -> list[dict[str, Any]]:
        ref = VersionedRef.parse(view)
        with self.sessions() as session:
            rows = session.execute(
                select(MaterializationRow)
                .where(MaterializationRow.view == str(ref))
                .order_by(MaterializationRow.id.desc())
            ).scalars()
            return [
                {
                    "id": r.id,
                    "view": r.view,
                    "start": r.start.isoformat(),
                    "end": r.end.isoformat(),
                    "rows": r.rows,
                    "passed": r.passed,
                    "generation": r.generation,
                    "created_by": r.created_by,
                    "created_at": r.created_at.isoformat(),
                    "report": r.report,
                }
                for r in rows
            ]

    def training_set(
        self, service: str, entity_df: pd.DataFrame, labels: tuple[str, ...] = ()
    ) -> TrainingSet:
        from features.training import training_set

        return training_set(self.repo, VersionedRef.parse(service), entity_df, labels)

    def client(
        self, config: CacheConfig | None = None, metrics: FeatureMetrics | None = None
    ) -> FeatureClient:
        """A cached online client over this project, invalidated through the database."""
        from features.client import CacheConfig, FeatureClient
        from features.online_direct import online_backend

        # Misses are read straight from the online store in Feast's format (SQLite, Redis).
        return FeatureClient(
            online_backend(self.repo.store),
            self.generations,
            config or CacheConfig(),
            metrics=metrics,
        )

    def _record(
        self,
        ref: VersionedRef,
        start: datetime,
        end: datetime,
        report: Any,
        passed: bool,
        actor: str,
    ) -> None:
        now = self.clock()
        in_database = isinstance(self.generations, DbGenerations)
        generation, unannounced = None, None
        if passed and not in_database:
            from features.client import BackendUnavailable

            try:
                generation = self.generations.bump(ref.feast_name)
            except BackendUnavailable as exc:  # the data is online: record it all the same
                unannounced = f"{exc}; caches drop the old values within the view's freshness"
        with self.sessions.begin() as session:
            if passed and in_database:
                generation = bump_in(session, ref.feast_name, now)
            session.add(
                MaterializationRow(
                    view=str(ref),
                    start=start,
                    end=end,
                    rows=int(report.get("rows", 0)),
                    passed=passed,
                    report=report,
                    generation=generation,
                    created_by=actor,
                    created_at=now,
                )
            )
            audit.append(
                session,
                actor=actor,
                action="features.materialize" if passed else "features.refuse",
                subject=str(ref),
                after={"passed": passed, "generation": generation},
                reason="online store updated" if passed else "critical expectations failed",
                evidence={
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "rows": report.get("rows"),
                    "failures": report.get("failures", []),
                    "warnings": report.get("warnings", []),
                    **({"generation_not_bumped": unannounced} if unannounced else {}),
                },
                clock=self.clock,
            )
