"""Moving traffic between versions that already passed their gates: canary steps, a canary
becoming production, rollbacks, pauses. The rollback controller, the CLI and the API all
act through here; none of it re-runs gates.

    rollouts = RolloutService(cp.sessions, cp.registry)
    rollouts.rollback("churn", actor="alice", reason="p99 doubled")      # canary, else champion
    rollouts.rollback("churn", actor="alice", reason="...", to=3)        # to a named version
    rollouts.advance("churn", 25, actor="controller", reason="...", revision=12)
    rollouts.complete("churn", actor="controller", reason="...", revision=13)
    rollouts.pause("churn", actor="alice", reason="investigating"); rollouts.resume(...)

Each action is one transaction under the model's row lock: lifecycle transitions with their
audit rows, a new revision and NOTIFY for the replicas, MLflow's aliases moved before the
commit and put back if it fails. With ``revision`` given it is a compare-and-set: if the
model changed since that revision, nothing moves (`ConcurrentChange`).

A rollback with no target undoes the newest change: a canary is removed (the champion keeps
answering); otherwise the champion hands over to the previous good version, the most
recently retired former champion (never one that was itself rolled back).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import ModelRow, ModelVersionRow
from controlplane.errors import InvalidTransition, NoFallback
from controlplane.lifecycle import (
    RETIRED,
    announce,
    changing,
    deployment_state,
    lock_model,
    move,
    new_split,
    version_row,
)
from controlplane.mlflow_mirror import MlflowMirror
from registry import Registrar, validate_model_name


@dataclass(frozen=True)
class RolloutResult:
    """What an action did: who serves before and after, at which revision."""

    name: str
    action: str  # rollback | canary_rollback | advance | promote | pause | resume | hold
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    revision: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "before": dict(self.before),
            "after": dict(self.after),
            "revision": self.revision,
            "reason": self.reason,
        }


class RolloutService:
    """Traffic moves between gated versions, each a compare-and-set transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registrar: Registrar,
        clock: Callable[[], datetime] = audit.utcnow,
    ) -> None:
        self.sessions = sessions
        self.registrar = registrar
        self.clock = clock

    # -- rollbacks ------------------------------------------------------------------------------
    def rollback(
        self,
        name: str,
        *,
        actor: str,
        reason: str,
        to: int | None = None,
        revision: int | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> RolloutResult:
        """Undo the newest change (a canary, else the champion), or return to version ``to``.

        ``evidence`` goes to the audit row (the controller's checks and windows); a rollback
        by a person records who asked and why.
        """
        validate_model_name(name)
        with self._changing(name, revision) as (session, model, mirror):
            before = deployment_state(model)
            states: dict[int, str] = {}
            proof = {"automatic": False, **(evidence or {})}
            if to is None and model.challenger_version is not None:
                action, canary = "canary_rollback", model.challenger_version
                row = version_row(session, name, canary)
                model.challenger_version = model.canary_percent = None
                new_split(model, self.clock())
                states[canary] = move(session, model, row, "rollback", actor=actor,
                                      reason=reason, clock=self.clock, before=before,
                                      evidence=proof)  # fmt: skip
            else:
                action, champion = "rollback", model.champion_version
                if champion is None:
                    raise InvalidTransition(name, "not serving", "rolled back")
                target = to if to is not None else self._fallback(session, name, champion)
                if target is None:
                    raise NoFallback(name, champion)
                restored = self._restorable(session, name, target, model)
                old = version_row(session, name, champion)
                model.champion_version = target
                new_split(model, self.clock())
                proof["rolled_back_to"] = target
                states[champion] = move(session, model, old, "rollback", actor=actor,
                                        reason=reason, clock=self.clock, before=before,
                                        evidence=proof)  # fmt: skip
                states[target] = move(
                    session, model, restored, "restore", actor=actor, clock=self.clock,
                    reason=f"rollback of {name}@{champion}: {reason}", before=before,
                    evidence={"rolled_back": champion},
                )  # fmt: skip
            after = announce(session, model, mirror, states)
            return RolloutResult(name, action, before, after, model.revision, reason)

    def fallback(self, name: str) -> int | None:
        """The version a rollback of the champion would return to (None: there is none)."""
        with self.sessions() as session:
            model = session.get(ModelRow, name)
            champion = model.champion_version if model is not None else None
            return self._fallback(session, name, champion)

    def abort(self, name: str, *, actor: str, reason: str) -> RolloutResult:
        """Remove the canary now (a person's rollback of it); refused when there is none."""
        with self.sessions() as session:
            model = session.get(ModelRow, validate_model_name(name))
            running = model is not None and model.challenger_version is not None
        if not running:
            raise InvalidTransition(name, "not running a canary", "aborted")
        return self.rollback(name, actor=actor, reason=reason)

    # -- canary steps ---------------------------------------------------------------------------
    def advance(
        self,
        name: str,
        percent: int,
        *,
        actor: str,
        reason: str,
        revision: int | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> RolloutResult:
        """Give the canary ``percent`` of the traffic (a step up; refused while paused)."""
        with self._changing(name, revision) as (session, model, mirror):
            canary = self._running_canary(model, name)
            if not 1 <= percent <= 99:
                raise InvalidTransition(f"{name}@{canary}", "a canary", f"given {percent}%")
            before = deployment_state(model)
            row = version_row(session, name, canary)
            model.canary_percent = percent
            new_split(model, self.clock())
            state = move(session, model, row, "step", actor=actor, reason=reason,
                         clock=self.clock, before=before, evidence=evidence)  # fmt: skip
            after = announce(session, model, mirror, {canary: state})
            return RolloutResult(name, "advance", before, after, model.revision, reason)

    def complete(
        self,
        name: str,
        *,
        actor: str,
        reason: str,
        revision: int | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> RolloutResult:
        """The canary becomes production; the champion retires (a good fallback)."""
        with self._changing(name, revision) as (session, model, mirror):
            canary = self._running_canary(model, name)
            before = deployment_state(model)
            champion = model.champion_version
            model.champion_version, model.challenger_version = canary, None
            model.canary_percent = None
            new_split(model, self.clock())
            states: dict[int, str] = {}
            if champion is not None:
                states[champion] = move(
                    session, model, version_row(session, name, champion), "retire",
                    actor=actor, clock=self.clock, before=before,
                    reason=f"replaced as champion by {name}@{canary}",
                )  # fmt: skip
            row = version_row(session, name, canary)
            states[canary] = move(session, model, row, "promote", actor=actor, reason=reason,
                                  clock=self.clock, before=before, evidence=evidence)  # fmt: skip
            after = announce(session, model, mirror, states)
            return RolloutResult(name, "promote", before, after, model.revision, reason)

    # -- pause, resume, hold --------------------------------------------------------------------
    def pause(self, name: str, *, actor: str, reason: str) -> RolloutResult:
        """Hold the canary at its weight: no steps, no promotion (failures still roll it back)."""
        return self._set_hold(name, actor, reason, paused=True, action="canary.pause")

    def resume(self, name: str, *, actor: str, reason: str) -> RolloutResult:
        """Let a paused or held canary go on (its passing analyses so far still count)."""
        return self._set_hold(name, actor, reason, paused=False, action="canary.resume")

    def hold(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        reason: str,
        revision: int,
        pause_canary: bool,
        code: str,
        action: str = "controller.hold",
        evidence: Mapping[str, Any] | None = None,
    ) -> RolloutResult | None:
        """The controller holds, or alerts (``action``), and says why once: None if it
        already did for that ``code`` at this revision. Who serves does not change; the
        model's ``hold_reason`` reads ``code: reason``."""
        with self.sessions.begin() as session:
            model = lock_model(session, name, self.clock())
            held = (model.hold_reason or "").split(":", 1)[0]
            if model.revision != revision or held == code:
                return None
            before = deployment_state(model)
            model.hold_reason = f"{code}: {reason}"
            model.canary_paused = model.canary_paused or pause_canary
            audit.append(
                session,
                actor=actor,
                action=action,
                subject=f"{name}@{version}",
                before=before,
                after={**before, "paused": model.canary_paused},
                reason=reason,
                evidence=dict(evidence) if evidence else None,
                clock=self.clock,
            )
            return RolloutResult(name, "hold", before, before, model.revision, reason)

    # -- internals ------------------------------------------------------------------------------
    def _changing(
        self, name: str, revision: int | None
    ) -> AbstractContextManager[tuple[Session, ModelRow, MlflowMirror]]:
        return changing(self.sessions, self.registrar.backend, name, revision, self.clock)

    @staticmethod
    def _running_canary(model: ModelRow, name: str) -> int:
        if model.challenger_version is None:
            raise InvalidTransition(name, "not running a canary", "stepped or promoted")
        if model.canary_paused:
            raise InvalidTransition(
                f"{name}@{model.challenger_version}",
                f"a paused canary ({model.hold_reason or 'paused'})",
                f"stepped or promoted; `mlcp canary resume {name}` first",
            )
        return model.challenger_version

    @staticmethod
    def _fallback(session: Session, name: str, champion: int | None) -> int | None:
        """The most recently retired former champion: it passed its gates, served, and was
        replaced, not rolled back."""
        found = session.execute(
            select(ModelVersionRow.version)
            .where(
                ModelVersionRow.model_name == name,
                ModelVersionRow.state == RETIRED,
                ModelVersionRow.version != champion,
            )
            .order_by(
                ModelVersionRow.state_changed_at.desc().nulls_last(),
                ModelVersionRow.version.desc(),
            )
            .limit(1)
        ).scalar_one_or_none()
        return found

    @staticmethod
    def _restorable(session: Session, name: str, target: int, model: ModelRow) -> ModelVersionRow:
        ref = f"{name}@{target}"
        if target == model.champion_version:
            raise InvalidTransition(ref, "the champion already", "rolled back to")
        if target == model.challenger_version:
            raise InvalidTransition(
                ref, "the running canary", f"rolled back to; `mlcp promote {ref}` to finish it"
            )
        row = session.execute(
            select(ModelVersionRow)
            .where(ModelVersionRow.model_name == name, ModelVersionRow.version == target)
            .with_for_update()
        ).scalar_one_or_none()
        if row is None or row.status != "complete":
            raise InvalidTransition(ref, "not registered", "rolled back to")
        return row

    def _set_hold(
        self, name: str, actor: str, reason: str, *, paused: bool, action: str
    ) -> RolloutResult:
        validate_model_name(name)
        with self.sessions.begin() as session:
            model = lock_model(session, name, self.clock())
            if model.challenger_version is None:
                raise InvalidTransition(name, "not running a canary", action.split(".")[1] + "d")
            before = {**deployment_state(model), "paused": model.canary_paused}
            model.canary_paused = paused
            model.hold_reason = reason if paused else None
            after = {**deployment_state(model), "paused": paused}
            audit.append(
                session,
                actor=actor,
                action=action,
                subject=f"{name}@{model.challenger_version}",
                before=before,
                after=after,
                reason=reason,
                clock=self.clock,
            )
            return RolloutResult(name, action.split(".")[1], before, after, model.revision, reason)
