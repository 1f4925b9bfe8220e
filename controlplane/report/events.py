"""The audit log's rows about one model, as the report shows them: markers on the time
charts (rollbacks, promotions, canary steps, holds) and the rollbacks with their evidence.

    events = report_events(rows)        # rows: AuditEntry.to_dict() of NAME@*, any order
    [e for e in events if e["kind"] == "rollback"]
    rollbacks(events)                   # each with its cause and how long the split had run

Pure: it reads the rows' action, subject, before/after and evidence, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controlplane.report.series import parse_time

# action -> marker kind; actions not listed go to the history table only.
MARKERS = {
    "model.rollback": "rollback",
    "model.promote": "promote",
    "model.canary": "canary",
    "model.canary_step": "canary",
    "model.demote": "canary",
    "controller.hold": "hold",
    "controller.alert": "hold",
    "canary.pause": "hold",
    "canary.resume": "canary",
    "model.shadow": "shadow",
    "model.unshadow": "shadow",
}
# What started the split a rollback undid: the latest of these for the same version.
SPLIT_STARTS = ("model.canary", "model.canary_step", "model.promote", "model.restore")


def report_events(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every row as an event, oldest first: ``ts``, ``kind`` (a marker kind or ``history``),
    ``version``, a short ``label`` and the row's actor, action and reason."""
    out = []
    for row in sorted(rows, key=lambda r: int(r["seq"])):
        version = _version(str(row["subject"]))
        after = row.get("after") or {}
        evidence = row.get("evidence") or {}
        out.append(
            {
                "seq": row["seq"],
                "ts": parse_time(row["ts"]).isoformat(),
                "kind": MARKERS.get(str(row["action"]), "history"),
                "action": row["action"],
                "version": version,
                "label": _label(str(row["action"]), version, after, evidence),
                "actor": row["actor"],
                "reason": row.get("reason"),
                "automatic": bool(evidence.get("automatic")),
            }
        )
    return out


def rollbacks(
    events: Sequence[Mapping[str, Any]], rows: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each rollback with its cause (the failed checks, the drifting features), where it
    went, and how long the split it undid had been serving."""
    by_seq = {int(r["seq"]): r for r in rows}
    out = []
    for i, event in enumerate(events):
        if event["action"] != "model.rollback":
            continue
        evidence = by_seq[int(event["seq"])].get("evidence") or {}
        drift = evidence.get("drift") if isinstance(evidence.get("drift"), Mapping) else {}
        began = next(
            (
                e["ts"]
                for e in reversed(events[:i])
                if e["version"] == event["version"] and e["action"] in SPLIT_STARTS
            ),
            None,
        )
        served_s = (parse_time(event["ts"]) - parse_time(began)).total_seconds() if began else None
        out.append(
            {
                "ts": event["ts"],
                "version": event["version"],
                "to": evidence.get("rolled_back_to"),
                "automatic": event["automatic"],
                "actor": event["actor"],
                "reason": event["reason"],
                "failed_checks": list(evidence.get("failed_checks") or []),
                "drifting": list((drift or {}).get("drifting") or []),
                "split_started": began,
                "served_s": served_s,
            }
        )
    return out


def _version(subject: str) -> int | None:
    _, _, tail = subject.rpartition("@")
    return int(tail) if tail.isdigit() else None


def _label(
    action: str, version: int | None, after: Mapping[str, Any], evidence: Mapping[str, Any]
) -> str:
    v = f"v{version}" if version is not None else "?"
    percent = after.get("canary_percent")
    labels = {
        "model.rollback": f"{v} rolled back"
        + (f" → v{evidence['rolled_back_to']}" if evidence.get("rolled_back_to") else ""),
        "model.promote": f"{v} → production",
        "model.canary": f"{v} canary {percent}%",
        "model.canary_step": f"{v} canary {percent}%",
        "model.demote": f"{v} demoted",
        "model.restore": f"{v} restored",
        "model.retire": f"{v} retired",
        "controller.hold": f"hold {v}",
        "controller.alert": f"alert {v}",
        "canary.pause": f"{v} paused",
        "canary.resume": f"{v} resumed",
        "model.shadow": f"{v} shadow",
        "model.unshadow": f"{v} shadow off",
        "model.register": f"{v} registered",
        "model.gates": f"{v} gates",
        "model.reject": f"{v} rejected",
        "model.validate": f"{v} awaits approval",
    }
    return labels.get(action, f"{action} {v}")
