"""What a model's report shows, read from the control plane: one JSON-able dict that
`render_report` turns into the page.

    data = gather_report(cp, "churn")                       # everything recorded
    data = gather_report(cp, "churn", since=an_hour_ago)    # the time charts from then on

It only calls the readers the commands use: ``mlcp serving windows`` (serving_windows),
``mlcp audit list`` (audit.entries), ``mlcp gates`` (gate_runs), ``mlcp lineage``
(build_lineage), ``mlcp drift`` (drift_report) and ``mlcp deployments``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controlplane import audit
from controlplane.jsonable import as_json
from controlplane.report.events import report_events, rollbacks
from controlplane.report.series import (
    bucket_seconds,
    drift_series,
    parse_time,
    traffic_series,
)
from registry import validate_model_name

if TYPE_CHECKING:
    from controlplane.context import ControlPlane
    from registry import ModelVersion

MAX_WINDOWS = 20_000  # the newest, when more ended since `since` (the page says so)
MAX_ANALYSES = 5_000  # per version
MAX_GATE_RUNS = 5  # per version, the newest


def gather_report(
    cp: ControlPlane,
    name: str,
    since: datetime | None = None,
    now: datetime | None = None,
    max_windows: int = MAX_WINDOWS,
) -> dict[str, Any]:
    """The report's data for model ``name`` (ModelNotFound when nothing is registered)."""
    from controlplane.deployments import deployments
    from controlplane.drift.report import drift_report
    from controlplane.serving.windows import serving_windows

    name = validate_model_name(name)
    now = now or audit.utcnow()
    versions = cp.registry.versions(name)
    with cp.sessions() as session:
        rows = [e.to_dict() for e in audit.entries(session, subject=f"{name}@*")]
    events = report_events(rows)
    windows = serving_windows(cp.sessions, name, limit=max_windows, since=since)
    windows.reverse()  # oldest first
    drift = [
        drift_series(drift_report(cp, v.ref, MAX_ANALYSES), v.version, since) for v in versions
    ]
    start, end = _time_range(windows, events, drift, since, now)
    bucket_s = bucket_seconds(windows, start, end)
    live = deployments(cp, name)
    return as_json(
        {
            "model": name,
            "generated_at": now.isoformat(),
            "since": since.isoformat() if since is not None else None,
            "range": {"start": start.isoformat(), "end": end.isoformat()},
            "windows": {
                "count": len(windows),
                "truncated": len(windows) >= max_windows,
                "replicas": sorted({str(w["replica"]) for w in windows}),
            },
            "bucket_s": bucket_s,
            "traffic": traffic_series(windows, start, bucket_s),
            "drift": [d for d in drift if d["points"]],
            "events": events,
            "rollbacks": rollbacks(events, rows),
            "deployment": live[0] if live else None,
            "policy": _policy(cp, name),
            "versions": [_version(cp, v, events) for v in versions],
            "lineage": _lineage(versions, events),
        }
    )


def _policy(cp: ControlPlane, name: str) -> dict[str, Any] | None:
    """The SLO lines the charts draw, from the model's current policy (None: it has none)."""
    from controlplane.errors import NoPolicy

    try:
        stored = cp.policies.current(name)
    except NoPolicy:
        return None
    slo = stored.policy.slo
    return {
        "revision": stored.revision,
        "p99_ms": slo.p99_ms,
        "max_error_rate": slo.max_error_rate,
        "drift_action": stored.policy.drift.action,
    }


def _time_range(
    windows: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    drift: Sequence[Mapping[str, Any]],
    since: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """From ``since``, else the first window (the charts are about serving: deployment events
    from before any traffic, such as a first promotion, stay in the tables), else the first
    deployment event; to the last thing seen."""
    times = [parse_time(w["ended_at"]) for w in windows[-1:]]
    times += [parse_time(e["ts"]) for e in events if e["kind"] != "history"]
    times += [parse_time(p["t"]) for d in drift for p in d["points"]]
    if since is not None:
        start = since
    elif windows:
        start = parse_time(windows[0]["started_at"])
    else:
        start = min(times, default=now)
    end = max((t for t in times if t >= start), default=now)
    return start, max(end, start)


def _version(cp: ControlPlane, version: ModelVersion, events: Sequence[Mapping[str, Any]]) -> Any:
    evaluation = cp.evaluations.latest(version.name, version.version)
    td = version.training_data
    return {
        "version": version.version,
        "ref": version.ref,
        "state": version.state,
        "registered_at": version.registered_at.isoformat(),
        "registered_by": version.registered_by,
        "feature_service": version.feature_service,
        "run_id": version.run_id,
        "code_version": version.code_version,
        "metrics": dict(version.metrics),
        "training_data": None if td is None else {"fingerprint": td.fingerprint, "rows": td.rows},
        "evaluation": None if evaluation is None else asdict(evaluation),
        "gate_runs": cp.promotions.gate_runs(version.ref)[:MAX_GATE_RUNS],
        "history": [e["label"] for e in events if e["version"] == version.version],
    }


def _lineage(versions: Sequence[ModelVersion], events: Sequence[Mapping[str, Any]]) -> Any:
    """`build_lineage` of every version, merged: shared feature services and training sets
    are one node each; each deployed version gets a node of what happened to it."""
    from controlplane.lineage import build_lineage
    from controlplane.report.lineage_view import merge_lineage

    return merge_lineage([build_lineage(v, []).to_dict() for v in versions], events)
