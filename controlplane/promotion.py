"""Promotion: run the policy's gates, record them, then move state and aliases in one
compare-and-set.

    result = promotions.promote("churn@2", actor="ci")               # to production
    result = promotions.promote("churn@2", actor="ci", canary_percent=10)
    result.outcome  # promoted | canary | pending_approval | refused | conflict
    promotions.shadow("churn@3", actor="ci", reason="compare on live traffic")
    promotions.unshadow("churn", actor="ci", reason="seen enough")

The gates run against a snapshot of the model's row (its ``revision``); the transition
locks that row and goes ahead only if the revision is unchanged. Two pipelines promoting
at once can't both win: the loser is told the model changed and nothing of it is moved.
MLflow's ``champion`` / ``challenger`` aliases move inside the same transaction, before
its commit, and are put back if the commit fails. A shadow gets a copy of the model's
traffic and answers nobody: it needs no gates and has no alias. Every change of who serves
bumps the revision and, on PostgreSQL, notifies the serving replicas at commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import GateRunRow, ModelRow
from controlplane.errors import ConcurrentChange, InvalidTransition
from controlplane.lifecycle import (
    AWAITING_APPROVAL,
    CANARY,
    PROMOTABLE,
    announce,
    changing,
    deployment_state,
    lock_model,
    move,
    new_split,
    transition,
    version_row,
)
from controlplane.mlflow_mirror import CHALLENGER, CHAMPION
from controlplane.policy import PolicyStore, StoredPolicy
from controlplane.serving.desired_state import notify_desired_state
from registry import ModelRef, ModelVersion, Registrar, validate_model_name
from registry.gates.base import GateContext, GateReport, GateResult, run_gates

if TYPE_CHECKING:
    from controlplane.evaluations import EvaluationService

Outcome = Literal["promoted", "canary", "pending_approval", "refused", "conflict"]


@dataclass(frozen=True)
class Snapshot:
    revision: int
    champion: int | None
    challenger: int | None
    shadow: int | None = None
    canary_percent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "champion": self.champion,
            "challenger": self.challenger,
            "canary_percent": self.canary_percent,
            "shadow": self.shadow,
        }


@dataclass(frozen=True)
class PromotionResult:
    ref: str
    outcome: Outcome
    target: str  # production | canary
    canary_percent: int | None
    report: GateReport
    policy_revision: int
    policy_sha256: str
    champion_before: int | None
    gate_run_id: int
    reason: str

    @property
    def accepted(self) -> bool:
        return self.outcome in ("promoted", "canary", "pending_approval")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "outcome": self.outcome,
            "target": self.target,
            "canary_percent": self.canary_percent,
            "passed": self.report.passed,
            "gates": [r.to_dict() for r in self.report.results],
            "failures": [r.gate for r in self.report.failures],
            "warnings": [r.gate for r in self.report.warnings],
            "policy": {"revision": self.policy_revision, "sha256": self.policy_sha256},
            "champion_before": self.champion_before,
            "gate_run_id": self.gate_run_id,
            "reason": self.reason,
        }


class PromotionService:
    """Promote, approve and reject model versions under their policies."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registrar: Registrar,
        policies: PolicyStore,
        evaluations: EvaluationService | None,
        clock: Callable[[], datetime] = audit.utcnow,
        machine_class: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.registrar = registrar
        self.policies = policies
        self.evaluations = evaluations
        self.clock = clock
        self.machine_class = machine_class  # None: detected (latency budgets name it)

    # -- reads --------------------------------------------------------------------------------
    def snapshot(self, name: str) -> Snapshot:
        with self.sessions() as session:
            row = session.get(ModelRow, name)
        if row is None:
            return Snapshot(0, None, None)
        return _snapshot(row)

    def gate_runs(self, ref: str) -> list[dict[str, Any]]:
        version = self.registrar.get(ref)
        with self.sessions() as session:
            rows = session.execute(
                select(GateRunRow)
                .where(GateRunRow.model_name == version.name, GateRunRow.version == version.version)
                .order_by(GateRunRow.id.desc())
            ).scalars()
            return [_gate_run_dict(r) for r in rows]

    # -- promote ------------------------------------------------------------------------------
    def promote(
        self,
        ref: str | ModelRef,
        actor: str,
        canary_percent: int | None = None,
        *,
        canary: bool = False,
    ) -> PromotionResult:
        """Run the gates and promote: to production, or with ``canary`` (or a
        ``canary_percent``) to a canary starting at that weight (default: the policy's first
        step), which the rollback controller then walks through the policy's steps."""
        version = self.registrar.get(ref)
        if version.state not in PROMOTABLE:
            raise InvalidTransition(version.ref, version.state, "promoted")
        if canary_percent is not None and not 1 <= canary_percent <= 99:
            raise InvalidTransition(version.ref, version.state, f"a {canary_percent}% canary")
        stored = self.policies.current(version.name)
        if canary and canary_percent is None:
            canary_percent = stored.policy.canary.steps[0]
        snap = self.snapshot(version.name)
        if snap.champion == version.version:
            raise InvalidTransition(version.ref, "already the champion", "promoted again")
        target = "canary" if canary_percent is not None else "production"

        context = self._context(version, snap, stored, actor)
        report = run_gates(stored.policy.build_gates(), context)
        needs_person = report.passed and stored.policy.approval.required
        outcome: Outcome = (
            "refused"
            if not report.passed
            else "pending_approval"
            if needs_person
            else ("canary" if target == "canary" else "promoted")
        )
        run_id = self._record_gates(
            version, target, canary_percent, stored, snap, report, outcome, actor
        )
        result = PromotionResult(
            ref=version.ref,
            outcome=outcome,
            target=target,
            canary_percent=canary_percent,
            report=report,
            policy_revision=stored.revision,
            policy_sha256=stored.sha256,
            champion_before=snap.champion,
            gate_run_id=run_id,
            reason="gates passed",
        )
        if outcome == "refused":
            reason = _reasons(report.failures)
            self._set_state(version, "refuse", actor, f"gates failed: {reason}", run_id)
            return replace(result, reason=reason)
        if outcome == "pending_approval":
            self._set_state(version, "await_approval", actor, "gates passed", run_id)
            return replace(result, reason="the policy requires a person: `mlcp approve`")
        try:
            self._transition(version, snap, target, canary_percent, actor, run_id, "gates passed")
        except ConcurrentChange as exc:
            self._set_outcome(run_id, "conflict")
            return replace(result, outcome="conflict", reason=str(exc))
        return result

    def approve(
        self, ref: str | ModelRef, actor: str, reason: str | None = None
    ) -> PromotionResult:
        version = self.registrar.get(ref)
        run = self._pending_run(version)
        if run.created_by == actor:
            raise InvalidTransition(
                version.ref, "awaiting approval", f"approved by {actor}, who asked for it"
            )
        snap = self.snapshot(version.name)
        if snap.champion != run.champion_version:
            raise ConcurrentChange(
                version.name, f"champion {run.champion_version}", f"champion {snap.champion}"
            )
        target, percent = _parse_target(run.target)
        why = reason or f"approved by {actor}"
        self._transition(version, snap, target, percent, actor, run.id, why)
        return PromotionResult(
            ref=version.ref,
            outcome="canary" if target == "canary" else "promoted",
            target=target,
            canary_percent=percent,
            report=GateReport(tuple(_result(d) for d in run.results)),
            policy_revision=run.policy_revision,
            policy_sha256=run.policy_sha256,
            champion_before=snap.champion,
            gate_run_id=run.id,
            reason=why,
        )

    def reject(self, ref: str | ModelRef, actor: str, reason: str) -> ModelVersion:
        version = self.registrar.get(ref)
        run = self._pending_run(version)
        self._set_state(version, "reject", actor, reason, run.id)
        return self.registrar.get(version.ref)

    # -- shadow -------------------------------------------------------------------------------
    def shadow(self, ref: str | ModelRef, actor: str, reason: str | None = None) -> Snapshot:
        """Mirror the model's traffic to ``ref``: its answers are recorded, never returned.

        Replaces any other shadow; setting the current shadow again changes nothing. No
        gates run: a shadow answers nobody. Refused for the champion and the challenger,
        which already take traffic.
        """
        version = self.registrar.get(ref)
        return self._set_shadow(version.name, version, actor, reason or f"shadowed by {actor}")

    def unshadow(self, name: str, actor: str, reason: str | None = None) -> Snapshot:
        """Stop mirroring the model's traffic; nothing to do when it has no shadow."""
        self.registrar.versions(validate_model_name(name))  # ModelNotFound, naming the fix
        return self._set_shadow(name, None, actor, reason or f"shadow removed by {actor}")

    def _set_shadow(
        self, name: str, version: ModelVersion | None, actor: str, reason: str
    ) -> Snapshot:
        wanted = version.version if version is not None else None
        with self.sessions.begin() as session:
            model = lock_model(session, name, self.clock())
            if version is not None:
                _check_shadowable(model, version)
            previous = model.shadow_version
            if previous == wanted:
                return _snapshot(model)  # already so: no revision, no audit row, no wake-up
            before = deployment_state(model)
            model.shadow_version = wanted
            model.revision += 1
            model.updated_at = self.clock()
            audit.append(
                session,
                actor=actor,
                action="model.shadow" if version is not None else "model.unshadow",
                # The version whose role changed, so its lineage shows the shadow period.
                subject=version.ref if version is not None else f"{name}@{previous}",
                before=before,
                after=deployment_state(model),
                reason=reason,
                evidence={"revision": model.revision},
                clock=self.clock,
            )
            notify_desired_state(session, name)
            return _snapshot(model)

    # -- internals ----------------------------------------------------------------------------
    def _context(
        self, version: ModelVersion, snap: Snapshot, stored: StoredPolicy, actor: str
    ) -> GateContext:
        gates = stored.policy.gates
        champion = None
        if snap.champion is not None and snap.champion != version.version:
            champion = self.registrar.get(f"{version.name}@{snap.champion}")
        cand_eval = champ_eval = None
        if self.evaluations is not None:
            cand_eval = self.evaluations.latest(version.name, version.version)
            if champion is not None and cand_eval is not None:
                champ_eval = self.evaluations.latest(
                    champion.name, champion.version, cand_eval.dataset_fingerprint
                )
        eval_data = training_data = None
        if gates.data_quality is not None:
            eval_data = _read_if_present(cand_eval.dataset_source if cand_eval else None)
            td = version.training_data
            training_data = _read_if_present(td.source if td else None)
        probe, device, machine = None, "cpu", self.machine_class
        if gates.latency is not None:
            from registry.gates.latency import detect_machine_class

            probe, device = self._latency_probe(version, actor)
            machine = machine or detect_machine_class(device)
        return GateContext(
            candidate=version,
            champion=champion,
            candidate_eval=cand_eval,
            champion_eval=champ_eval,
            eval_data=eval_data,
            training_data=training_data,
            latency_probe=probe,
            device=device,
            machine_class=machine,
        )

    def _latency_probe(self, version: ModelVersion, actor: str) -> tuple[Any, str]:
        import torch

        from controlplane.artifacts import load_verified
        from registry.gates.latency import make_forward_probe
        from serving.config import cpu_threads

        spec = json.loads(version.signature["inputs"])[0]["tensor-spec"]
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load_verified(self.registrar.backend, self.sessions, version, actor)
        shape = tuple(int(d) for d in spec["shape"][1:])
        # Timed with the threads `mlcp serve` gives torch here: the figure is what serves.
        threads = cpu_threads() if device == "cpu" else None
        probe = make_forward_probe(model, shape, spec["dtype"], device, threads=threads)
        return probe, device

    def _record_gates(
        self,
        version: ModelVersion,
        target: str,
        percent: int | None,
        stored: StoredPolicy,
        snap: Snapshot,
        report: GateReport,
        outcome: str,
        actor: str,
    ) -> int:
        with self.sessions.begin() as session:
            row = GateRunRow(
                model_name=version.name,
                version=version.version,
                target=target if percent is None else f"canary:{percent}",
                policy_sha256=stored.sha256,
                policy_revision=stored.revision,
                champion_version=snap.champion,
                passed=report.passed,
                results=[r.to_dict() for r in report.results],
                outcome=outcome,
                created_by=actor,
                created_at=self.clock(),
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="model.gates",
                subject=version.ref,
                after={"passed": report.passed, "outcome": outcome},
                reason=_reasons(report.failures) or "all gates passed",
                evidence={
                    "gate_run_id": row.id,
                    "policy_revision": stored.revision,
                    "policy_sha256": stored.sha256,
                    "champion_version": snap.champion,
                    "results": [_summary(r) for r in report.results],
                },
                clock=self.clock,
            )
            return row.id

    def _set_outcome(self, gate_run_id: int, outcome: str) -> None:
        with self.sessions.begin() as session:
            row = session.get(GateRunRow, gate_run_id)
            if row is not None:
                row.outcome = outcome

    def _set_state(
        self, version: ModelVersion, event: str, actor: str, reason: str, gate_run_id: int
    ) -> None:
        """A gate outcome (refused, awaiting approval) or a person's rejection, as a
        lifecycle transition under the model's lock."""
        with self.sessions.begin() as session:
            model = lock_model(session, version.name, self.clock())
            row = version_row(session, version.name, version.version)
            if row.state == CANARY:  # still serving as challenger: the state stays truthful
                return
            transition(
                session,
                model,
                row,
                event,
                actor=actor,
                reason=reason,
                clock=self.clock,
                evidence={"gate_run_id": gate_run_id},
            )

    def _transition(
        self,
        version: ModelVersion,
        snap: Snapshot,
        target: str,
        percent: int | None,
        actor: str,
        gate_run_id: int,
        reason: str,
    ) -> None:
        name, backend = version.name, self.registrar.backend
        with changing(self.sessions, backend, name, snap.revision, self.clock) as (
            session,
            model,
            mirror,
        ):
            now = self.clock()
            before = deployment_state(model)
            evidence: dict[str, Any] = {"gate_run_id": gate_run_id}
            moved = mirror.drift({CHAMPION: before[CHAMPION], CHALLENGER: before[CHALLENGER]})
            if moved is not None:  # someone moved an alias mlcp owns: say so, set it right
                evidence["aliases_moved_outside_mlcp"] = moved
            row = version_row(session, name, version.version)
            replaced: tuple[int, str] | None = None  # (version, event) of whom this displaces
            if target == "production":
                if model.champion_version is not None:
                    replaced = (model.champion_version, "retire")
                model.champion_version = version.version
                if model.challenger_version == version.version:
                    model.challenger_version = model.canary_percent = None
                event = "promote"
            else:
                if model.challenger_version not in (None, version.version):
                    replaced = (model.challenger_version, "demote")
                model.challenger_version, model.canary_percent = version.version, percent
                event = "start_canary"
            if model.shadow_version == version.version:
                model.shadow_version = None  # it takes real traffic now: no more mirroring
            new_split(model, now)
            states: dict[int, str] = {}
            if replaced is not None:
                old, old_event = replaced
                role = "champion" if old_event == "retire" else "challenger"
                states[old] = move(
                    session, model, version_row(session, name, old), old_event, actor=actor,
                    reason=f"replaced as {role} by {version.ref}", clock=self.clock,
                    before=before,
                )  # fmt: skip
            states[version.version] = move(
                session, model, row, event, actor=actor, reason=reason, clock=self.clock,
                before=before, evidence=evidence,
            )  # fmt: skip
            announce(session, model, mirror, states)

    def _pending_run(self, version: ModelVersion) -> GateRunRow:
        if version.state != AWAITING_APPROVAL:
            raise InvalidTransition(version.ref, version.state, "approved or rejected")
        with self.sessions() as session:
            run = session.execute(
                select(GateRunRow)
                .where(GateRunRow.model_name == version.name, GateRunRow.version == version.version)
                .order_by(GateRunRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        if run is None or run.outcome != "pending_approval":
            raise InvalidTransition(version.ref, "not awaiting approval", "approved or rejected")
        return run


def _snapshot(row: ModelRow) -> Snapshot:
    return Snapshot(
        row.revision,
        row.champion_version,
        row.challenger_version,
        row.shadow_version,
        row.canary_percent,
    )


def _check_shadowable(model: ModelRow, version: ModelVersion) -> None:
    off = f"shadow another version, or stop with `mlcp shadow {version.name} --off`"
    if model.champion_version == version.version:
        raise InvalidTransition(version.ref, "the champion", f"its own shadow; {off}")
    if model.challenger_version == version.version:
        raise InvalidTransition(
            version.ref,
            f"the challenger of a {model.canary_percent}% canary",
            f"a shadow too (it already takes traffic); {off}",
        )


def _read_if_present(source: str | None) -> Any:
    if not source or not Path(source).is_file():
        return None
    from features import read_dataset

    return read_dataset(Path(source))


def _parse_target(text: str) -> tuple[str, int | None]:
    if text.startswith("canary:"):
        return "canary", int(text.split(":", 1)[1])
    return text, None


def _reasons(failures: Sequence[GateResult]) -> str:
    """The failed gates in one line, then each distinct fix the gates know, once."""
    fixes = list(dict.fromkeys(str(r.details["fix"]) for r in failures if r.details.get("fix")))
    text = "; ".join(_describe(r) for r in failures)
    return f"{text}; to fix: {'; '.join(fixes)}" if fixes else text


def _describe(result: GateResult) -> str:
    """One failed gate: observed against needed, or why it could not judge."""
    if result.observed is None:
        why = result.details.get("reason") or result.details.get("error") or "nothing observed"
        return f"{result.gate}: {why}"
    observed = f"{result.observed:.4g}" if isinstance(result.observed, float) else result.observed
    return f"{result.gate}: observed {observed}, needs {result.threshold}"


def _summary(result: GateResult) -> dict[str, Any]:
    return {
        "gate": result.gate,
        "passed": result.passed,
        "observed": result.observed,
        "threshold": result.threshold,
    }


def _result(data: dict[str, Any]) -> GateResult:
    return GateResult(**data)


def _gate_run_dict(row: GateRunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "ref": f"{row.model_name}@{row.version}",
        "target": row.target,
        "policy_sha256": row.policy_sha256,
        "policy_revision": row.policy_revision,
        "champion_version": row.champion_version,
        "passed": row.passed,
        "outcome": row.outcome,
        "results": row.results,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
    }
