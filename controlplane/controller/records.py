"""What the controller reads and writes in the control-plane database: live models, the
windows no analysis has consumed yet, its history, and its analyses.

    store = ControllerStore(cp.sessions)
    for model in store.live_models(): ...
    windows = store.unanalysed(model)                 # {version: [(id, body), ...]} (+ stale)
    history = store.history(model, policy, now)
    store.record(model, decisions, windows, controller="controller@host:42", now=now)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.controller.decide import Decision, History, LiveModel
from controlplane.controller.traffic import Traffic
from controlplane.db.models import AnalysisRow, ModelRow, ModelVersionRow, ServingWindowRow
from controlplane.drift import VersionReference
from controlplane.lifecycle import RETIRED
from controlplane.policy import Policy
from controlplane.rollout import RolloutService
from controlplane.serving.windows import replicas

STALE_AFTER_S = 30.0  # a replica not heard from this long is gone, not behind

STALE = 0  # analysis_id of windows that began before the current traffic split: not judged
ROLLBACK_ACTIONS = ("model.rollback",)
ALTERNATIVES = 10  # earlier good versions a best-match rollback chooses among, newest first


@dataclass(frozen=True)
class LiveRow:
    """A live model as read, with when its current traffic split began."""

    model: LiveModel
    step_started_at: datetime | None


@dataclass
class Unanalysed:
    """A model's windows not consumed yet: by version, and those too old to judge."""

    by_version: dict[int, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    stale: list[int] = field(default_factory=list)

    def traffic(self) -> dict[int, Traffic]:
        return {
            version: Traffic.merge(Traffic.of_window(body, wid) for wid, body in rows)
            for version, rows in self.by_version.items()
        }


class ControllerStore:
    """The controller's reads and writes; each call is one short transaction."""

    def __init__(
        self, sessions: sessionmaker[Session], rollouts: RolloutService, history_limit: int = 200
    ) -> None:
        self.sessions = sessions
        self.rollouts = rollouts
        self.history_limit = history_limit

    def live_models(self, now: datetime | None = None) -> list[LiveRow]:
        """Every model with a champion or a challenger, with its fallback and whether the
        replicas serving it have taken up its current revision."""
        heard = [
            r
            for r in replicas(self.sessions)
            if now is None
            or now - datetime.fromisoformat(r["seen_at"]) <= timedelta(seconds=STALE_AFTER_S)
        ]
        with self.sessions() as session:
            rows = (
                session.execute(
                    select(ModelRow)
                    .where(
                        (ModelRow.champion_version.is_not(None))
                        | (ModelRow.challenger_version.is_not(None))
                    )
                    .order_by(ModelRow.name)
                )
                .scalars()
                .all()
            )
            references = {row.name: _references(session, row) for row in rows}
        return [
            LiveRow(
                LiveModel(
                    name=row.name,
                    revision=row.revision,
                    champion=row.champion_version,
                    challenger=row.challenger_version,
                    canary_percent=row.canary_percent or 0,
                    paused=row.canary_paused,
                    hold_reason=row.hold_reason,
                    fallback=self.rollouts.fallback(row.name),
                    converged=all(
                        r["serving"][row.name].get("revision") == row.revision
                        for r in heard
                        if row.name in r.get("serving", {})
                    ),
                    references=references[row.name][0],
                    alternatives=references[row.name][1],
                ),
                audit.as_utc(row.step_started_at) if row.step_started_at else None,
            )
            for row in rows
        ]

    def last_analysis_at(self, name: str) -> datetime | None:
        with self.sessions() as session:
            at = session.execute(
                select(func.max(AnalysisRow.at)).where(AnalysisRow.model_name == name)
            ).scalar_one_or_none()
        return audit.as_utc(at) if at is not None else None

    def unanalysed(self, live: LiveRow) -> Unanalysed:
        """Windows of the live versions no analysis consumed; those that began before the
        current split are stale (they saw the old weights)."""
        model = live.model
        versions = [v for v in (model.champion, model.challenger) if v is not None]
        with self.sessions() as session:
            rows = session.execute(
                select(ServingWindowRow.id, ServingWindowRow.started_at, ServingWindowRow.body)
                .where(
                    ServingWindowRow.model_name == model.name,
                    ServingWindowRow.version.in_(versions),
                    ServingWindowRow.analysis_id.is_(None),
                )
                .order_by(ServingWindowRow.id)
            ).all()
        found = Unanalysed()
        for window_id, started_at, body in rows:
            if live.step_started_at is not None and audit.as_utc(started_at) < live.step_started_at:
                found.stale.append(window_id)
            else:
                found.by_version.setdefault(int(body["version"]), []).append((window_id, body))
        return found

    def history(self, live: LiveRow, policy: Policy, now: datetime) -> History:
        model = live.model
        with self.sessions() as session:
            step = self._verdicts(
                session, model.name, model.challenger, "challenger", model.revision
            )
            run = self._verdicts(session, model.name, model.champion, "champion", model.revision)
            baseline_rows = []
            if model.champion is not None:
                baseline_rows = list(
                    session.execute(
                        select(AnalysisRow.body)
                        .where(
                            AnalysisRow.model_name == model.name,
                            AnalysisRow.version == model.champion,
                            AnalysisRow.role == "champion",
                            AnalysisRow.verdict == "pass",
                        )
                        .order_by(AnalysisRow.id.desc())
                        .limit(policy.slo.baseline_windows)
                    ).scalars()
                )
            rollbacks = [
                e
                for e in audit.entries(session, subject=f"{model.name}@*", action="model.rollback")
                if (e.evidence or {}).get("automatic")
            ]
            drift = {
                version: state
                for version, role in (
                    (model.champion, "champion"),
                    (model.challenger, "challenger"),
                )
                if version is not None
                and (state := _drift_state(session, model.name, version, role, model.revision))
            }
        baseline = Traffic.merge(
            Traffic.from_dict(body.get("counts", {})) for body in baseline_rows
        )
        hour_ago = now - timedelta(hours=1)
        return History(
            step=step,
            champion_run=run,
            baseline=baseline if baseline_rows else None,
            baseline_windows=len(baseline_rows),
            rollbacks=tuple(audit.as_utc(e.ts) for e in rollbacks if audit.as_utc(e.ts) > hour_ago),
            rolled_back=frozenset(int(e.subject.rsplit("@", 1)[1]) for e in rollbacks),
            drift=drift,
        )

    def _verdicts(
        self, session: Session, name: str, version: int | None, role: str, revision: int
    ) -> tuple[Any, ...]:
        if version is None:
            return ()
        verdicts = session.execute(
            select(AnalysisRow.verdict)
            .where(
                AnalysisRow.model_name == name,
                AnalysisRow.version == version,
                AnalysisRow.role == role,
                AnalysisRow.revision == revision,
            )
            .order_by(AnalysisRow.id.desc())
            .limit(self.history_limit)
        ).scalars()
        return tuple(reversed(list(verdicts)))

    def record(
        self,
        live: LiveRow,
        decisions: Iterable[Decision],
        windows: Unanalysed,
        *,
        controller: str,
        now: datetime,
        keep: Callable[[Decision], bool],
    ) -> dict[int, int]:
        """Store the analyses ``keep`` selects and mark the windows they consumed (and the
        stale ones); returns the analysis id per version."""
        ids: dict[int, int] = {}
        with self.sessions.begin() as session:
            for decision in decisions:
                analysis = decision.analysis
                if analysis is None or not keep(decision):
                    continue
                row = AnalysisRow(
                    model_name=live.model.name,
                    version=analysis.version,
                    role=analysis.role,
                    revision=live.model.revision,
                    at=now,
                    verdict=analysis.verdict,
                    requests=analysis.traffic.requests,
                    errors=analysis.traffic.errors,
                    rejected=analysis.traffic.rejected,
                    client_errors=analysis.traffic.client_errors,
                    body={
                        **analysis.to_dict(),
                        "counts": analysis.traffic.to_dict(),
                        "decision": {"action": decision.action, "reason": decision.reason},
                    },
                    controller=controller,
                )
                session.add(row)
                session.flush()
                ids[analysis.version] = row.id
                consumed = [wid for wid, _ in windows.by_version.get(analysis.version, [])]
                _mark(session, consumed, row.id)
            _mark(session, windows.stale, STALE)
        return ids

    def analyses(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest analyses of a model, newest first (for `mlcp deployments`)."""
        with self.sessions() as session:
            rows = session.execute(
                select(AnalysisRow)
                .where(AnalysisRow.model_name == name)
                .order_by(AnalysisRow.id.desc())
                .limit(limit)
            ).scalars()
            return [_analysis_dict(r) for r in rows]


def _references(
    session: Session, model: ModelRow
) -> tuple[dict[int, VersionReference], tuple[VersionReference, ...]]:
    """The live versions' drift references, and those of the earlier good (retired)
    versions a best-match rollback may return to."""
    live = [v for v in (model.champion_version, model.challenger_version) if v is not None]
    rows = session.execute(
        select(
            ModelVersionRow.version,
            ModelVersionRow.state,
            ModelVersionRow.reference_stats,
            ModelVersionRow.prediction_reference,
        )
        .where(
            ModelVersionRow.model_name == model.name,
            ModelVersionRow.status == "complete",
            ModelVersionRow.version.in_(live) | (ModelVersionRow.state == RETIRED),
        )
        .order_by(ModelVersionRow.version.desc())
    ).all()
    references: dict[int, VersionReference] = {}
    alternatives: list[VersionReference] = []
    for version, state, stats, predictions in rows:
        if version in live:
            references[version] = VersionReference.of(version, stats, predictions)
        elif state == RETIRED and stats and len(alternatives) < ALTERNATIVES:
            alternatives.append(VersionReference.of(version, stats, predictions))
    return references, tuple(alternatives)


def _drift_state(
    session: Session, name: str, version: int, role: str, revision: int
) -> dict[str, float]:
    """The version's detectors after its last analysis at this revision (a change of who
    serves starts them afresh)."""
    body = session.execute(
        select(AnalysisRow.body)
        .where(
            AnalysisRow.model_name == name,
            AnalysisRow.version == version,
            AnalysisRow.role == role,
            AnalysisRow.revision == revision,
        )
        .order_by(AnalysisRow.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    drift = (body or {}).get("drift") or {}
    state = drift.get("state") if isinstance(drift, dict) else None
    return {str(k): float(v) for k, v in state.items()} if isinstance(state, dict) else {}


def _mark(session: Session, window_ids: list[int], analysis_id: int) -> None:
    if window_ids:
        session.execute(
            update(ServingWindowRow)
            .where(ServingWindowRow.id.in_(window_ids))
            .values(analysis_id=analysis_id)
        )


def _analysis_dict(row: AnalysisRow) -> dict[str, Any]:
    body = row.body
    return {
        "id": row.id,
        "model": row.model_name,
        "version": row.version,
        "role": row.role,
        "revision": row.revision,
        "at": audit.as_utc(row.at).isoformat(),
        "verdict": row.verdict,
        "requests": row.requests,
        "errors": row.errors,
        "rejected": row.rejected,
        "client_errors": row.client_errors,
        "controller": row.controller,
        "traffic": body.get("traffic"),
        "checks": body.get("checks", []),
        "drift": body.get("drift"),
        "decision": body.get("decision"),
    }
