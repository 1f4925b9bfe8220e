"""A model version's lifecycle: one transition table for promotion, approval, canary steps,
rollback and the controller alike.

    registered ──gates fail──────────────> rejected
        │ └────gates pass, approval needed─> awaiting_approval ──reject──> rejected
        │                                        │ approve
        ├──canary──> canary ──step──> canary     ▼
        │              │ └──promote────────> production ──retire──> retired
        │              └──rollback/abort─> rolled_back    │              │
        └──promote──────────────────────────────┘        └─rollback─> rolled_back
                                              retired/validated ──restore──> production

Every change goes through `transition`, inside the caller's transaction and under the
model's row lock (the caller passes the locked `ModelRow` as proof): it checks the table,
sets the state and its time, and writes the audit row. Nothing else writes
``ModelVersionRow.state``.

    with sessions.begin() as session:
        model = lock_model(session, "churn", now)
        transition(session, model, row, "rollback", actor="controller", reason="...", ...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import ModelRow, ModelVersionRow
from controlplane.db.upsert import insert_if_missing
from controlplane.errors import ConcurrentChange, InvalidTransition
from controlplane.mlflow_mirror import MlflowMirror
from controlplane.serving.desired_state import notify_desired_state

if TYPE_CHECKING:
    from registry.mlflow_backend import MlflowBackend

REGISTERED = "registered"
AWAITING_APPROVAL = "awaiting_approval"
VALIDATED = "validated"  # passed its gates, takes no traffic (e.g. a replaced challenger)
CANARY = "canary"
PRODUCTION = "production"
RETIRED = "retired"  # a former champion: a good version to roll back to
REJECTED = "rejected"
ROLLED_BACK = "rolled_back"

# Versions a promotion (which re-runs the gates) may start from.
PROMOTABLE = frozenset(
    {REGISTERED, AWAITING_APPROVAL, VALIDATED, REJECTED, RETIRED, ROLLED_BACK, CANARY}
)

# event -> (the states it may start from, the state it leads to, the audit action)
TRANSITIONS: Mapping[str, tuple[frozenset[str], str, str]] = {
    "refuse": (PROMOTABLE - {CANARY}, REJECTED, "model.reject"),
    "await_approval": (PROMOTABLE - {CANARY}, AWAITING_APPROVAL, "model.validate"),
    "reject": (frozenset({AWAITING_APPROVAL}), REJECTED, "model.reject"),
    "start_canary": (PROMOTABLE, CANARY, "model.canary"),
    "step": (frozenset({CANARY}), CANARY, "model.canary_step"),
    "promote": (PROMOTABLE, PRODUCTION, "model.promote"),
    "retire": (frozenset({PRODUCTION}), RETIRED, "model.retire"),
    "demote": (frozenset({CANARY}), VALIDATED, "model.demote"),
    "rollback": (frozenset({CANARY, PRODUCTION}), ROLLED_BACK, "model.rollback"),
    "restore": (frozenset({RETIRED, VALIDATED}), PRODUCTION, "model.restore"),
}


def next_state(ref: str, state: str, event: str) -> str:
    """The state ``event`` leads to from ``state``; InvalidTransition names what is allowed."""
    sources, target, _ = TRANSITIONS[event]
    if state not in sources:
        allowed = ", ".join(sorted(sources))
        raise InvalidTransition(ref, state, f"{_verb(event)} (only from: {allowed})")
    return target


def lock_model(session: Session, name: str, now: datetime) -> ModelRow:
    """The model's row, created if missing, locked until the transaction ends."""
    insert_if_missing(session, ModelRow, "name", name=name, revision=0, updated_at=now)
    return session.execute(
        select(ModelRow).where(ModelRow.name == name).with_for_update()
    ).scalar_one()


@contextmanager
def changing(
    sessions: sessionmaker[Session],
    backend: MlflowBackend,
    name: str,
    revision: int | None,
    clock: Callable[[], datetime],
) -> Iterator[tuple[Session, ModelRow, MlflowMirror]]:
    """What every change of who serves shares: the MLflow mirror outside (it puts the aliases
    back if the commit fails), the transaction inside, the model's row locked and, with
    ``revision``, compared: if the model changed since, nothing moves (`ConcurrentChange`)."""
    with MlflowMirror(backend, name) as mirror, sessions.begin() as session:
        model = lock_model(session, name, clock())
        if revision is not None and model.revision != revision:
            raise ConcurrentChange(
                name,
                f"revision {revision}",
                f"revision {model.revision} (champion {model.champion_version})",
            )
        yield session, model, mirror


def deployment_state(model: ModelRow) -> dict[str, Any]:
    """Who serves, as audit rows record it before and after a change."""
    return {
        "champion": model.champion_version,
        "challenger": model.challenger_version,
        "canary_percent": model.canary_percent,
        "shadow": model.shadow_version,
    }


def new_split(model: ModelRow, now: datetime) -> None:
    """Record a change of who takes traffic: a new revision (replicas follow it), a new step
    (the controller judges only what came after), and no hold carried over."""
    model.revision += 1
    model.updated_at = model.step_started_at = now
    model.canary_paused, model.hold_reason = False, None


def version_row(session: Session, name: str, version: int) -> ModelVersionRow:
    """A registered version's row, locked (its model's row must be locked first)."""
    return session.execute(
        select(ModelVersionRow)
        .where(ModelVersionRow.model_name == name, ModelVersionRow.version == version)
        .with_for_update()
    ).scalar_one()


def transition(
    session: Session,
    model: ModelRow,
    row: ModelVersionRow,
    event: str,
    *,
    actor: str,
    reason: str,
    clock: audit.Clock,
    evidence: Mapping[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> str:
    """Move ``row`` by ``event`` and write its audit row; returns the new state.

    ``model`` is the version's model row, locked by `lock_model` in this transaction.
    ``before`` / ``after`` add to the audit row's states (who serves, before and after).
    """
    ref = f"{row.model_name}@{row.version}"
    assert model.name == row.model_name, "transition() needs the version's own model row"
    previous = row.state
    row.state = next_state(ref, previous, event)
    if row.state != previous:
        row.state_changed_at = clock()
    audit.append(
        session,
        actor=actor,
        action=TRANSITIONS[event][2],
        subject=ref,
        before={"state": previous, **(before or {})},
        after={"state": row.state, **(after or {})},
        reason=reason,
        evidence=dict(evidence) if evidence else None,
        clock=clock,
    )
    return row.state


def _verb(event: str) -> str:
    return {
        "refuse": "refused",
        "await_approval": "set to await approval",
        "reject": "rejected",
        "start_canary": "made a canary",
        "step": "stepped up",
        "promote": "promoted",
        "retire": "retired",
        "demote": "demoted",
        "rollback": "rolled back",
        "restore": "restored to production",
    }[event]


def move(
    session: Session,
    model: ModelRow,
    row: ModelVersionRow,
    event: str,
    *,
    actor: str,
    reason: str,
    clock: audit.Clock,
    before: Mapping[str, Any],
    evidence: Mapping[str, Any] | None = None,
) -> str:
    """`transition` as part of a change of who serves: the audit row shows who served before
    and after, and the revision the change made."""
    return transition(
        session,
        model,
        row,
        event,
        actor=actor,
        reason=reason,
        clock=clock,
        evidence={**(evidence or {}), "revision": model.revision},
        before=before,
        after=deployment_state(model),
    )


def announce(
    session: Session, model: ModelRow, mirror: MlflowMirror, states: Mapping[int, str]
) -> dict[str, Any]:
    """After a change of who serves: wake the replicas (NOTIFY, delivered at commit) and move
    MLflow's aliases and state tags. Returns who serves now."""
    notify_desired_state(session, model.name)
    after = deployment_state(model)
    mirror.publish(after["champion"], after["challenger"], states)
    return after
