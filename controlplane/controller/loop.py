"""The rollback controller's loop: read, decide, act. The deciding is `decide`'s.

    controller = Controller(cp, interval_s=1.0)
    controller.run(stop_event)            # `mlcp controller run`: until stop_event is set
    controller.tick()                     # one pass over every live model (tests, --once)

Each tick, for each model whose analysis interval (``canary.interval_s``) has passed, it
reads the windows no analysis has consumed, merges them per version across replicas, asks
`decide`, records the analyses (marking their windows consumed), and carries out the first
decision that calls for action, as a compare-and-set on the revision it judged (if the
model changed meanwhile, nothing moves and the next tick judges again). Only the leader
acts (`controlplane.controller.leader`); with ``dry_run`` it records and reports but moves
nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from controlplane import audit
from controlplane.controller.decide import Decision, decide
from controlplane.controller.events import Event, EventHub
from controlplane.controller.leader import Leadership, leadership
from controlplane.controller.metrics import ControllerMetrics
from controlplane.controller.records import ControllerStore, LiveRow
from controlplane.errors import ConcurrentChange, ControlPlaneError, NoPolicy
from controlplane.policy import Policy

if TYPE_CHECKING:
    from controlplane.context import ControlPlane

log = logging.getLogger(__name__)


def controller_identity() -> str:
    """How the audit log names this controller process."""
    return f"controller@{socket.gethostname()}:{os.getpid()}"


class Controller:
    """Watches every live version and acts on `decide`'s decisions."""

    def __init__(
        self,
        cp: ControlPlane,
        *,
        interval_s: float = 1.0,
        dry_run: bool = False,
        identity: str | None = None,
        lease: Leadership | None = None,
        events: EventHub | None = None,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], datetime] = audit.utcnow,
    ) -> None:
        self.cp = cp
        self.interval_s = interval_s
        self.dry_run = dry_run
        self.identity = identity or controller_identity()
        self.lease = lease or leadership(cp.settings)
        self.events = events or EventHub()
        self.metrics = metrics or ControllerMetrics()
        self.events.subscribe(self.metrics.on_event)
        self.clock = clock
        self.store = ControllerStore(cp.sessions, cp.rollouts)
        self.leading = False
        self._last: dict[str, datetime] = {}  # when each model was last analysed

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Lead (or wait as a standby) and tick every ``interval_s`` until ``stop`` is set."""
        self.prepare()
        try:
            while not stop.is_set():
                started = time.monotonic()
                if self.lead():
                    self.tick_safely()
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            self.lease.release()
            if self.leading:
                self._publish("standby", detail={"why": "stopped"})

    def prepare(self) -> None:
        """Open the MLflow backend now (seconds of imports), so that acting on a breach, which
        moves MLflow's aliases, does not pay for it when it counts."""
        _ = self.cp.registry.backend

    def lead(self) -> bool:
        """Take or keep the lease; announce (and audit) a change of leadership."""
        holding = self.lease.hold()
        if holding and not self.leading:
            self._last.clear()  # another controller may have analysed meanwhile
            self._audit_leadership()
            self._publish("lead", detail={"identity": self.identity, "dry_run": self.dry_run})
        elif self.leading and not holding:
            log.warning("%s lost the controller lease; standing by", self.identity)
            self._publish("standby", detail={"why": "lease lost"})
        self.leading = holding
        return holding

    def tick_safely(self) -> list[Decision]:
        """`tick`, logging (not raising) a failure: a database blip must not end the loop."""
        try:
            return self.tick()
        except Exception as exc:
            log.warning("controller tick failed (%s: %s); retrying next interval",
                        type(exc).__name__, exc)  # fmt: skip
            self._publish("error", detail={"error": f"{type(exc).__name__}: {exc}"})
            return []

    def tick(self) -> list[Decision]:
        """One pass over every live model; returns the decisions acted on (or reported)."""
        started = time.perf_counter()
        acted = []
        for live in self.store.live_models(self.clock()):
            decision = self._judge(live)
            if decision is not None:
                acted.append(decision)
        self.metrics.tick.observe(time.perf_counter() - started)
        return acted

    # -- one model ------------------------------------------------------------------------------
    def _judge(self, live: LiveRow) -> Decision | None:
        name = live.model.name
        policy = self._policy(name)
        now = self.clock()
        last = self._last.get(name) or self.store.last_analysis_at(name)
        # Ticks jitter: an analysis due a hair after this tick is taken now, not a whole tick
        # later (which would double the interval when both are 1 s).
        slack = min(policy.canary.interval_s, self.interval_s) / 2
        if last is not None and now - last < timedelta(seconds=policy.canary.interval_s - slack):
            return None
        windows = self.store.unanalysed(live)
        traffic = windows.traffic()
        history = self.store.history(live, policy, now)
        decisions = decide(live.model, traffic, policy, history, now)
        # A canary's analyses count even without traffic (too little is a finding); an idle
        # champion's are not worth a row.
        self.store.record(
            live,
            decisions,
            windows,
            controller=self.identity,
            now=now,
            keep=lambda d: (
                d.analysis is not None
                and (d.analysis.role == "challenger" or d.analysis.traffic.requests > 0)
            ),
        )
        self._last[name] = now
        for d in decisions:
            if d.analysis is not None:
                self._publish(
                    "analysis", name, d.version,
                    {"role": d.analysis.role, "verdict": d.analysis.verdict,
                     "checks": [c.to_dict() for c in d.analysis.checks]},
                )  # fmt: skip
        first = decisions[0] if decisions else None
        if first is None or first.action == "nothing":
            return None
        self._publish("decision", name, first.version, first.to_dict())
        if not self.dry_run:
            self._act(live, first, decisions)
        return first

    def _act(self, live: LiveRow, decision: Decision, decisions: list[Decision]) -> None:
        rollouts, name, model = self.cp.rollouts, live.model.name, live.model
        failed = [c.name for c in decision.analysis.failures] if decision.analysis else []
        if "drift" in decision.evidence and "drift" not in failed:
            failed.append("drift")  # the champion's drift: not an SLO check, still the cause
        evidence = {
            "automatic": True,
            "controller": self.identity,
            "decision": {"action": decision.action, "reason": decision.reason},
            "failed_checks": failed,
            "analyses": [d.analysis.to_dict() for d in decisions if d.analysis is not None],
            **dict(decision.evidence),
        }
        who, why, revision = self.identity, decision.reason, decision.revision
        try:
            if decision.action == "rollback":
                # A canary's rollback only removes it; the champion's returns to the target.
                to = None if decision.version == model.challenger else decision.target
                result = rollouts.rollback(
                    name, actor=who, reason=why, to=to, revision=revision, evidence=evidence
                )
            elif decision.action == "advance":
                assert decision.target is not None
                result = rollouts.advance(
                    name, decision.target, actor=who, reason=why, revision=revision,
                    evidence=evidence,
                )  # fmt: skip
            elif decision.action == "promote":
                result = rollouts.complete(
                    name, actor=who, reason=why, revision=revision, evidence=evidence
                )
            else:  # hold, alert: say so once, change who serves nothing
                held = rollouts.hold(
                    name, decision.version, actor=who, reason=why, revision=revision,
                    pause_canary=decision.version == model.challenger,
                    code=decision.code or decision.action,
                    action=f"controller.{decision.action}", evidence=evidence,
                )  # fmt: skip
                if held is not None:
                    self._publish(decision.action, name, decision.version, evidence)
                return
        except ConcurrentChange as exc:
            self._publish("conflict", name, decision.version, {"why": str(exc)})
            return
        except ControlPlaneError as exc:  # e.g. the fallback vanished: say so, judge again
            log.warning("%s: could not %s (%s)", name, decision.action, exc)
            self._publish("error", name, decision.version, {"error": str(exc)})
            return
        self._last.pop(name, None)  # a new split: judge it from the next interval on
        self._publish(result.action, name, decision.version, {**evidence, **result.to_dict()})

    # -- helpers --------------------------------------------------------------------------------
    def _policy(self, name: str) -> Policy:
        try:
            return self.cp.policies.current(name).policy
        except NoPolicy:
            return Policy()  # a model promoted without a policy is still watched, on defaults

    def _audit_leadership(self) -> None:
        with self.cp.sessions.begin() as session:
            audit.append(
                session,
                actor=self.identity,
                action="controller.lead",
                subject="controller",
                reason="dry run: analyses only" if self.dry_run else "took the controller lease",
                evidence={"interval_s": self.interval_s, "dry_run": self.dry_run},
                clock=self.clock,
            )

    def _publish(
        self,
        kind: str,
        model: str | None = None,
        version: int | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        self.events.publish(Event(kind, self.clock(), model, version, detail or {}))
