"""The controller's event hub: what it decided and did, for whoever listens (Prometheus, the
terminal, the demo's narration). A subscriber that fails is logged and skipped: it never
blocks a rollback.

    hub = EventHub()
    hub.subscribe(metrics.on_event)
    hub.publish(Event("rollback", model="churn", version=3, detail={...}))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

# kinds: lead, standby, analysis, decision, rollback, canary_rollback, advance, promote,
# hold, alert, conflict, error
KINDS = frozenset(
    {"lead", "standby", "analysis", "decision", "rollback", "canary_rollback", "advance",
     "promote", "hold", "alert", "conflict", "error"}
)  # fmt: skip


@dataclass(frozen=True)
class Event:
    kind: str
    at: datetime
    model: str | None = None
    version: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at.isoformat(),
            "model": self.model,
            "version": self.version,
            **dict(self.detail),
        }


class EventHub:
    """Publishes events to subscribers in order; a failing subscriber is logged, not raised."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, subscriber: Callable[[Event], None]) -> None:
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> None:
        assert event.kind in KINDS, event.kind
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("an event subscriber failed on %s; going on", event.kind)
