"""The controller's Prometheus series, fed by its events (``mlcp controller run
--metrics-port``).

``mlcp_controller_leader`` (1 while this process leads), ``mlcp_controller_rollbacks_total``
(by model and reason: the check that failed), ``mlcp_controller_actions_total`` (by model
and action), ``mlcp_controller_analyses_total`` (by model, role, check and verdict),
``mlcp_controller_holding`` (1 while the controller holds a model and says why) and
``mlcp_controller_tick_seconds``. Label values come from the database's models and the
fixed check names, never from request data.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.controller.events import Event


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.leader = Gauge("mlcp_controller_leader", "1 while this process leads.", registry=r)
        self.rollbacks = Counter(
            "mlcp_controller_rollbacks",
            "Automatic rollbacks, by model and the check that caused them.",
            ("model", "reason"),
            registry=r,
        )
        self.actions = Counter(
            "mlcp_controller_actions",
            "Actions carried out, by model and action.",
            ("model", "action"),
            registry=r,
        )
        self.analyses = Counter(
            "mlcp_controller_analyses",
            "Analysis results per check.",
            ("model", "role", "check", "verdict"),
            registry=r,
        )
        self.holding = Gauge(
            "mlcp_controller_holding",
            "1 while the controller holds a model (no fallback, cap, too little traffic).",
            ("model",),
            registry=r,
        )
        self.tick = Histogram(
            "mlcp_controller_tick_seconds",
            "Time of one controller tick over every live model.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )

    def on_event(self, event: Event) -> None:
        model = event.model or ""
        if event.kind == "lead":
            self.leader.set(1)
        elif event.kind == "standby":
            self.leader.set(0)
        elif event.kind == "analysis":
            for check in event.detail.get("checks", ()):
                self.analyses.labels(
                    model, event.detail["role"], check["check"], check["verdict"]
                ).inc()
        elif event.kind in ("rollback", "canary_rollback", "advance", "promote", "alert"):
            self.actions.labels(model, event.kind).inc()
            if event.kind in ("rollback", "canary_rollback"):
                failed = tuple(event.detail.get("failed_checks", ()))
                cause = "drift" if "drift" in failed else "slo"
                kind = "canary" if event.kind == "canary_rollback" else cause
                reason = f"{kind}:" + ",".join(failed or ("manual",))
                self.rollbacks.labels(model, reason).inc()
            self.holding.labels(model).set(0)
        elif event.kind == "hold":
            self.actions.labels(model, "hold").inc()
            self.holding.labels(model).set(1)
