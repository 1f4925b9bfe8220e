"""Where replicas' report windows and heartbeats land: `serving.spec.WindowSink` on
``mlcp_serving_windows`` and ``mlcp_replicas``, and the readers behind ``mlcp serving windows``
and the replicas column of ``mlcp deployments``.

    sink = DbWindowSink(cp.sessions)
    sink.report([window, ...])                          # one transaction per report
    sink.heartbeat(status)                              # upserts the replica's row
    serving_windows(cp.sessions, "churn", version=3)    # newest first, as dicts (since=...)
    replicas(cp.sessions)                               # every replica's last heartbeat
    serving_costs(cp.sessions, "churn", since)          # {version: (device-s, predictions)}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.audit import as_utc, utcnow
from controlplane.db.models import ReplicaRow, ServingWindowRow

if TYPE_CHECKING:
    from serving.spec import ReplicaStatus
    from serving.windows import Window


class DbWindowSink:
    """Stores report windows in the control-plane database.

    ``DbWindowSink(cp.sessions).report(windows)``: all of one report commit together.
    """

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def report(self, windows: list[Window]) -> None:
        if not windows:
            return
        received_at = self.clock()
        with self.sessions.begin() as session:
            session.add_all([_row(w, received_at) for w in windows])

    def heartbeat(self, status: ReplicaStatus) -> None:
        body = status.to_dict()
        with self.sessions.begin() as session:
            row = session.get(ReplicaRow, status.replica, with_for_update=True)
            if row is None:
                session.add(
                    ReplicaRow(
                        replica=status.replica,
                        started_at=as_utc(status.started_at),
                        seen_at=as_utc(status.at),
                        status=body,
                    )
                )
            else:
                row.started_at, row.seen_at = as_utc(status.started_at), as_utc(status.at)
                row.status = body


def replicas(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Every replica's last heartbeat (``ReplicaStatus.to_dict()`` plus ``seen_at``), by name."""
    with sessions() as session:
        rows = session.execute(select(ReplicaRow).order_by(ReplicaRow.replica)).scalars().all()
    return [{**row.status, "seen_at": as_utc(row.seen_at).isoformat()} for row in rows]


def serving_windows(
    sessions: sessionmaker[Session],
    name: str,
    version: int | None = None,
    limit: int = 100,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The model's (or one version's) latest windows (those ending at or after ``since``),
    newest first: each is the window's ``Window.to_dict()`` plus ``id`` and ``received_at``."""
    query = select(ServingWindowRow).where(ServingWindowRow.model_name == name)
    if version is not None:
        query = query.where(ServingWindowRow.version == version)
    if since is not None:
        query = query.where(ServingWindowRow.ended_at >= as_utc(since))
    query = query.order_by(ServingWindowRow.ended_at.desc(), ServingWindowRow.id.desc())
    with sessions() as session:
        rows = session.execute(query.limit(max(0, limit))).scalars().all()
    return [
        {**row.body, "id": row.id, "received_at": as_utc(row.received_at).isoformat()}
        for row in rows
    ]


def serving_costs(
    sessions: sessionmaker[Session], name: str, since: datetime
) -> dict[int, tuple[float, int]]:
    """Per version of ``name``: device-seconds and predictions answered in the windows that
    ended after ``since`` (every replica's)."""
    query = (
        select(
            ServingWindowRow.version,
            func.sum(ServingWindowRow.compute_s),
            func.sum(ServingWindowRow.answered),
        )
        .where(ServingWindowRow.model_name == name, ServingWindowRow.ended_at > since)
        .group_by(ServingWindowRow.version)
    )
    with sessions() as session:
        rows = session.execute(query).all()
    return {int(v): (float(s or 0.0), int(n or 0)) for v, s, n in rows}


def _row(window: Window, received_at: datetime) -> ServingWindowRow:
    return ServingWindowRow(
        replica=window.replica,
        model_name=window.model,
        version=window.version,
        role=window.role,
        started_at=as_utc(window.started_at),
        ended_at=as_utc(window.ended_at),
        requests=window.requests,
        errors=window.errors,
        rejected=window.rejected,
        client_errors=window.client_errors,
        latency_sum_s=window.latency_sum_s,
        compute_s=window.compute_s,
        answered=window.answered,
        body=window.to_dict(),
        received_at=as_utc(received_at),
    )
