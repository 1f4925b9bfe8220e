"""The rollback controller: watches every live version, walks canaries through their steps
and rolls back on SLO regression, with the evidence in the audit log.

    from controlplane.controller import Controller
    Controller(cp, interval_s=1.0).run(stop_event)      # what `mlcp controller run` does

The decision is `decide` (pure: windows, policy, history, now -> decisions); `checks` and
`stats` hold the tests it runs, `traffic` merges replicas' windows, `records` is its
database access, `leader` keeps one controller active, `events` and `metrics` report.
"""

from controlplane.controller.decide import Analysis, Decision, History, LiveModel, decide
from controlplane.controller.events import Event, EventHub
from controlplane.controller.loop import Controller, controller_identity
from controlplane.controller.traffic import Traffic

__all__ = [
    "Analysis",
    "Controller",
    "Decision",
    "Event",
    "EventHub",
    "History",
    "LiveModel",
    "Traffic",
    "controller_identity",
    "decide",
]
