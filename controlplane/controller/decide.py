"""The rollback controller's decision: a pure function of what it saw and remembers.

    decisions = decide(model, traffic, policy, history, now)
    decisions[0].action       # rollback | promote | advance | hold | alert | nothing

Per live version (the champion, and the challenger of a canary) it analyses the new
windows, then decides:

- **Canary.** Its checks run against the SLO and against the champion over the same
  windows. An analysis below ``canary.min_requests`` is inconclusive. More than
  ``failure_limit`` failed analyses in the current step roll it back (a rollback that only
  removes the canary, so no cap applies); ``success_windows`` passing ones advance it to the
  next step, or to production after the last (never for a version the controller rolled
  back before, nor with ``auto_promote: false``); ``inconclusive_limit`` inconclusive ones in
  a row hold it and say why. A paused canary is still rolled back on failure.
- **Production.** The champion is checked against the SLO and its own baseline (its
  recent passing analyses); ``breach_windows`` failed analyses in a row confirm a breach,
  which rolls back to the previous good version (``rollback.on_breach: alert`` only says
  so). With no healthy fallback, or past ``rollback.max_per_hour``, it holds and says why.
- **Drift.** Every analysis also compares each live version's inputs and predictions with
  its own reference (``controlplane.drift``: statistics per feature, a calibrated CUSUM
  over windows). A canary whose drift is confirmed fails its ``drift`` check. A champion
  whose drift is confirmed (and whose SLO holds) gets ``drift.action``: ``alert``,
  ``rollback`` to the previous good version, or ``rollback_to_best_match``: the earlier
  good version whose training reference is closest to live traffic (held when none is
  closer than the champion's own). The evidence names the detectors, their statistics,
  thresholds and windows.

Nothing here reads a clock, a database or the network: the loop in
``controlplane.controller.loop`` gathers the inputs and carries the decision out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from controlplane.controller.checks import (
    Check,
    Verdict,
    cost_versus,
    error_rate_slo,
    error_rate_versus,
    p99_slo,
    p99_versus,
)
from controlplane.controller.traffic import Traffic
from controlplane.drift import DriftAnalysis, VersionReference, analyse_drift, reference_distances
from controlplane.policy import Policy

Action = Literal["rollback", "promote", "advance", "hold", "alert", "nothing"]
# When several versions call for an action, the first in this order is carried out.
PRIORITY: tuple[Action, ...] = ("rollback", "alert", "promote", "advance", "hold", "nothing")


@dataclass(frozen=True)
class LiveModel:
    """A model's deployment as the controller reads it."""

    name: str
    revision: int
    champion: int | None
    challenger: int | None = None
    canary_percent: int = 0
    paused: bool = False  # a person paused the canary, or the controller holds it
    hold_reason: str | None = None
    fallback: int | None = None  # the previous good version (None: no healthy fallback)
    # Every replica that serves the model serves this revision (from their heartbeats). While
    # they converge, too little traffic is no finding: the canary may not be loaded yet.
    converged: bool = True
    # Drift: the live versions' references, and the earlier good versions' (best match).
    references: Mapping[int, VersionReference] = field(default_factory=dict)
    alternatives: tuple[VersionReference, ...] = ()


@dataclass(frozen=True)
class History:
    """What the controller remembers of a model, from its earlier analyses and actions.

    ``step`` holds the challenger's verdicts in the current step (oldest first) and
    ``champion_run`` the champion's since the last change of who serves; ``baseline`` is
    the champion's pooled traffic over its recent passing analyses.
    """

    step: tuple[Verdict, ...] = ()
    champion_run: tuple[Verdict, ...] = ()
    baseline: Traffic | None = None
    baseline_windows: int = 0
    rollbacks: tuple[datetime, ...] = ()  # the controller's rollbacks of this model, recent
    rolled_back: frozenset[int] = frozenset()  # versions the controller rolled back before
    # Each live version's drift detectors (their CUSUMs) after its last analysis.
    drift: Mapping[int, Mapping[str, float]] = field(default_factory=dict)

    def rollbacks_since(self, since: datetime) -> int:
        return sum(1 for at in self.rollbacks if at > since)


@dataclass(frozen=True)
class Analysis:
    """One version's analysis: its merged traffic, its checks, their verdict."""

    version: int
    role: str  # champion | challenger
    verdict: Verdict
    traffic: Traffic
    checks: tuple[Check, ...]
    min_requests: int
    drift: DriftAnalysis | None = None

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "role": self.role,
            "verdict": self.verdict,
            "min_requests": self.min_requests,
            "traffic": self.traffic.summary(),
            "checks": [c.to_dict() for c in self.checks],
            "drift": self.drift.to_dict() if self.drift is not None else None,
        }


@dataclass(frozen=True)
class Decision:
    """What to do about one live version, and the evidence for it."""

    model: str
    version: int
    action: Action
    reason: str
    revision: int  # the model revision judged: acting is a compare-and-set on it
    analysis: Analysis | None = None
    target: int | None = None  # rollback: the version to return to; advance: the weight
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # Why a hold or alert, as a stable word (no_fallback, rollback_cap, too_little_traffic,
    # rolled_back_before, auto_promote_off, alert_only, drift_alert, no_better_match): said
    # once per revision and code.
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "action": self.action,
            "reason": self.reason,
            "revision": self.revision,
            "target": self.target,
            "code": self.code,
            "analysis": self.analysis.to_dict() if self.analysis else None,
            **dict(self.evidence),
        }


def analyse(
    version: int,
    role: str,
    traffic: Traffic,
    policy: Policy,
    reference: Traffic | None,
    against: str,
    drift_reference: VersionReference | None = None,
    drift_state: Mapping[str, float] | None = None,
) -> Analysis:
    """Run one version's checks: the SLO, and against ``reference`` (the champion over the
    same windows, or the champion's own baseline; None: no comparison yet). With a
    ``drift_reference``, drift is judged too; for a canary it is one of its checks."""
    slo = policy.slo
    checks = [
        error_rate_slo(traffic, slo.max_error_rate, slo.alpha),
        p99_slo(traffic, slo.p99_ms, slo.alpha),
    ]
    if reference is not None:
        ratio = (
            (slo.max_canary_p99_ratio or 1.5)
            if against == "champion"
            else slo.max_baseline_p99_ratio
        )
        checks += [
            error_rate_versus(traffic, reference, against, slo.alpha),
            p99_versus(traffic, reference, against, ratio, slo.min_p99_increase_ms, slo.alpha),
        ]
        if against == "champion" and slo.max_canary_cost_ratio is not None:
            checks.append(cost_versus(traffic, reference, slo.max_canary_cost_ratio))
    drift = None
    if policy.drift.enabled and drift_reference is not None and drift_reference.detectors:
        sketches = traffic.sketches
        drift = analyse_drift(
            drift_reference, sketches.features, sketches.predictions, policy.drift,
            drift_state or {},
        )  # fmt: skip
        if role == "challenger" and policy.drift.canary:
            checks.append(drift_check(drift))
    minimum = policy.canary.min_requests if role == "challenger" else slo.min_requests
    verdicts = {c.verdict for c in checks}
    verdict: Verdict
    if "fail" in verdicts:
        verdict = "fail"  # a real breach shows even on little traffic: the tests say so
    elif traffic.served < minimum or "inconclusive" in verdicts:
        verdict = "inconclusive"
    else:
        verdict = "pass"
    return Analysis(version, role, verdict, traffic, tuple(checks), minimum, drift)


def drift_check(drift: DriftAnalysis) -> Check:
    """A canary's drift as a check: failed once a detector confirms drift; skipped (not
    inconclusive: it never holds a canary) while too few rows were sketched to judge."""
    verdict: Verdict = "fail" if drift.confirmed else "pass" if drift.judged else "skip"
    psis = [r.psi for r in drift.results if r.psi is not None]
    return Check(
        "drift",
        verdict,
        round(max(psis), 5) if psis else None,
        drift.thresholds(),
        {"note": drift.describe(), "drifting": [r.name for r in drift.alarms]},
    )


def decide(
    model: LiveModel,
    traffic: Mapping[int, Traffic],
    policy: Policy,
    history: History,
    now: datetime,
) -> list[Decision]:
    """One decision per live version (champion first), each with its analysis. ``traffic``
    holds each version's windows merged since the last analysis."""
    decisions = []
    champion_traffic = traffic.get(model.champion) if model.champion is not None else None
    if model.champion is not None:
        decisions.append(
            _watch_champion(model, champion_traffic or Traffic(), policy, history, now)
        )
    if model.challenger is not None:
        challenger = traffic.get(model.challenger) or Traffic()
        decisions.append(_judge_canary(model, challenger, champion_traffic, policy, history))
    return sorted(decisions, key=lambda d: PRIORITY.index(d.action))


def _watch_champion(
    model: LiveModel, traffic: Traffic, policy: Policy, history: History, now: datetime
) -> Decision:
    version = model.champion
    assert version is not None
    enough_baseline = history.baseline is not None and history.baseline_windows >= 3
    analysis = analyse(
        version,
        "champion",
        traffic,
        policy,
        history.baseline if enough_baseline else None,
        "baseline",
        model.references.get(version),
        history.drift.get(version),
    )

    def decision(
        action: Action,
        reason: str,
        target: int | None = None,
        code: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> Decision:
        return Decision(
            model.name, version, action, reason, model.revision, analysis, target,
            evidence or {}, code,
        )  # fmt: skip

    run = (*history.champion_run, analysis.verdict)
    breach = _trailing_failures(run)
    drift = analysis.drift
    if analysis.verdict != "fail" and drift is not None and drift.confirmed:
        return _on_drift(model, analysis, drift, policy, history, now, decision)
    if analysis.verdict != "fail":
        return decision("nothing", f"{analysis.verdict}; no breach")
    needed = policy.slo.breach_windows
    why = "; ".join(c.describe() for c in analysis.failures)
    if breach < needed:
        return decision("nothing", f"failed ({why}); breach {breach} of {needed} to confirm")
    confirmed = f"SLO breach confirmed over {breach} analyses: {why}"
    if policy.rollback.on_breach == "alert":
        return decision("alert", f"{confirmed}; the policy says alert only", code="alert_only")
    if model.fallback is None:
        return decision(
            "hold", f"{confirmed}; no healthy version to roll back to, holding", code="no_fallback"
        )
    capped = _over_rollback_cap(model, policy, history, now, confirmed, decision)
    return capped or decision("rollback", confirmed, target=model.fallback)


def _over_rollback_cap(
    model: LiveModel,
    policy: Policy,
    history: History,
    now: datetime,
    confirmed: str,
    decision: Any,
    evidence: Mapping[str, Any] | None = None,
) -> Decision | None:
    """A hold when ``rollback.max_per_hour`` automatic rollbacks already happened, else None."""
    cap = policy.rollback.max_per_hour
    recent = history.rollbacks_since(now - timedelta(hours=1))
    if recent < cap:
        return None
    return decision(
        "hold",
        f"{confirmed}; {recent} automatic rollbacks of {model.name} in the last hour "
        f"(rollback.max_per_hour: {cap}), holding",
        code="rollback_cap",
        evidence=evidence,
    )


def _on_drift(
    model: LiveModel,
    analysis: Analysis,
    drift: DriftAnalysis,
    policy: Policy,
    history: History,
    now: datetime,
    decision: Any,
) -> Decision:
    """The champion's confirmed drift, handled as ``drift.action`` says."""
    action = policy.drift.action
    confirmed = f"{drift.describe()} over windows {list(analysis.traffic.windows)}"
    evidence: dict[str, Any] = {"drift": drift.to_dict(), "thresholds": drift.thresholds()}
    if action == "alert":
        return decision(
            "alert", f"{confirmed}; drift.action is alert", code="drift_alert", evidence=evidence
        )
    capped = _over_rollback_cap(model, policy, history, now, confirmed, decision, evidence)
    if capped is not None:
        return capped
    if action == "rollback":
        if model.fallback is None:
            return decision(
                "hold",
                f"{confirmed}; no healthy version to roll back to, holding",
                code="no_fallback",
                evidence=evidence,
            )
        return decision("rollback", confirmed, target=model.fallback, evidence=evidence)
    # rollback_to_best_match: the earlier good version closest to live traffic.
    live = analysis.traffic.sketches.features
    own = model.references.get(analysis.version)
    distances = reference_distances([*model.alternatives, *([own] if own else [])], live)
    evidence["reference_distances"] = distances
    current = distances.get(analysis.version)
    candidates = {v: d for v, d in distances.items() if v != analysis.version}
    if not candidates:
        return decision(
            "hold",
            f"{confirmed}; no earlier good version with a reference to roll back to, holding",
            code="no_fallback",
            evidence=evidence,
        )
    best = min(candidates, key=lambda v: (candidates[v], -v))
    if current is not None and candidates[best] >= current:
        return decision(
            "hold",
            f"{confirmed}; no earlier good version is closer to live traffic (best "
            f"{model.name}@{best}: {candidates[best]:.4f}, current {current:.4f}), holding",
            code="no_better_match",
            evidence=evidence,
        )
    return decision(
        "rollback",
        f"{confirmed}; {model.name}@{best}'s reference is closest to live traffic "
        f"(JS {candidates[best]:.4f} against {current if current is not None else 'n/a'})",
        target=best,
        evidence=evidence,
    )


def _judge_canary(
    model: LiveModel,
    traffic: Traffic,
    champion: Traffic | None,
    policy: Policy,
    history: History,
) -> Decision:
    version = model.challenger
    assert version is not None
    canary = policy.canary
    analysis = analyse(
        version, "challenger", traffic, policy, champion, "champion",
        model.references.get(version), history.drift.get(version),
    )  # fmt: skip
    step = (*history.step, analysis.verdict)

    def decision(
        action: Action, reason: str, target: int | None = None, code: str | None = None
    ) -> Decision:
        return Decision(
            model.name, version, action, reason, model.revision, analysis, target, code=code
        )

    failures = step.count("fail")
    if analysis.verdict == "fail":
        why = "; ".join(c.describe() for c in analysis.failures)
        if failures > canary.failure_limit:
            return decision(
                "rollback",
                f"canary failed {failures} analyses at {model.canary_percent}% "
                f"(canary.failure_limit: {canary.failure_limit}): {why}",
                target=model.champion,
            )
        return decision("nothing", f"failed ({why}); {failures} of {canary.failure_limit} allowed")
    if analysis.verdict == "inconclusive" and not model.converged:
        waiting = replace(analysis, verdict="skip")
        return Decision(
            model.name, version, "nothing", f"replicas are still taking up revision "
            f"{model.revision}: not judged", model.revision, waiting,
        )  # fmt: skip
    if analysis.verdict == "inconclusive":
        run = _trailing(step, "inconclusive")
        if run >= canary.inconclusive_limit and not model.paused:
            return decision(
                "hold",
                f"{run} analyses in a row had too little traffic (under canary.min_requests: "
                f"{canary.min_requests} requests each) at {model.canary_percent}%; holding at "
                "this weight: send more traffic, or `mlcp canary resume` / `mlcp promote` by hand",
                code="too_little_traffic",
            )
        return decision("nothing", f"inconclusive ({run} in a row)")
    passes = step.count("pass")
    if passes < canary.success_windows:
        return decision("nothing", f"passed {passes} of {canary.success_windows} analyses")
    if model.paused:
        return decision("nothing", f"passed; paused ({model.hold_reason or 'by a person'})")
    later = [s for s in canary.steps if s > model.canary_percent]
    if later:
        return decision("advance", f"passed {passes} analyses at {model.canary_percent}%", later[0])
    if version in history.rolled_back:
        return decision(
            "hold",
            f"passed every step, but the controller rolled {model.name}@{version} back before: "
            "it is not promoted again automatically; `mlcp promote` it by hand",
            code="rolled_back_before",
        )
    if not canary.auto_promote:
        return decision(
            "hold",
            "passed every step; canary.auto_promote is false: `mlcp promote` by hand",
            code="auto_promote_off",
        )
    return decision("promote", f"passed every step up to {model.canary_percent}%")


def _trailing(verdicts: Sequence[str], kind: str) -> int:
    count = 0
    for verdict in reversed(verdicts):
        if verdict != kind:
            break
        count += 1
    return count


def _trailing_failures(verdicts: Sequence[str]) -> int:
    """Failed analyses since the last pass (inconclusive ones neither confirm nor clear)."""
    count = 0
    for verdict in reversed(verdicts):
        if verdict == "pass":
            break
        count += verdict == "fail"
    return count
