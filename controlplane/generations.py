"""Feature-view generations on the control-plane database: the cross-process signal that a
materialization landed, for the feature caches of every serving process.

Implements ``features.generations.GenerationSource``; Redis (``RedisGenerations``) is the
other choice when serving runs many replicas and the database should not see their polls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import FeatureGenerationRow
from controlplane.db.upsert import insert_if_missing


class DbGenerations:
    """``current`` reads one row per view; ``bump`` increments it, atomically."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = audit.utcnow
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def current(self, views: Sequence[str]) -> dict[str, int]:
        with self.sessions() as session:
            rows = session.execute(
                select(FeatureGenerationRow).where(FeatureGenerationRow.view.in_(list(views)))
            ).scalars()
            found = {r.view: r.generation for r in rows}
        return {v: found.get(v, 0) for v in views}

    def bump(self, view: str) -> int:
        with self.sessions.begin() as session:
            return bump_in(session, view, self.clock())


def bump_in(session: Session, view: str, now: datetime) -> int:
    """Increment ``view``'s generation inside the caller's transaction; returns the new one."""
    insert_if_missing(
        session, FeatureGenerationRow, "view", view=view, generation=0, updated_at=now
    )
    row = session.execute(
        select(FeatureGenerationRow).where(FeatureGenerationRow.view == view).with_for_update()
    ).scalar_one()
    row.generation += 1
    row.updated_at = now
    return row.generation
