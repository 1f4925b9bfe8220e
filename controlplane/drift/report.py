"""``mlcp drift NAME@V``: a version's drift over its recent analysis windows, as the
controller judged it (and ``GET /v1/models/{name}/versions/{version}/drift``).

    report = drift_report(cp, "churn@2", windows=20)
    report["detectors"][0]["series"]["psi"]      # oldest first, one value per window
    report["conclusion"]["summary"]              # what the detector concluded last

Both the CLI and the API call this one function; it only reads the controller's analyses
(each stores its windows' drift statistics and every detector's CUSUM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from controlplane import audit
from controlplane.db.models import AnalysisRow
from controlplane.drift.reference import VersionReference
from controlplane.errors import NoPolicy
from controlplane.policy import Policy

if TYPE_CHECKING:
    from controlplane.context import ControlPlane

SERIES = ("psi", "js", "p_value", "z", "cusum")


def drift_report(cp: ControlPlane, ref: str, windows: int = 20) -> dict[str, Any]:
    """The version's last ``windows`` analyses with drift statistics, per detector."""
    version = cp.registry.get(ref)
    try:
        policy = cp.policies.current(version.name).policy
    except NoPolicy:
        policy = Policy()
    reference = VersionReference.of(
        version.version, version.reference_stats, version.prediction_reference
    )
    with cp.sessions() as session:
        rows = list(
            session.execute(
                select(AnalysisRow)
                .where(
                    AnalysisRow.model_name == version.name,
                    AnalysisRow.version == version.version,
                )
                .order_by(AnalysisRow.id.desc())
                .limit(max(1, windows))
            ).scalars()
        )
    analyses = [r for r in reversed(rows) if isinstance(r.body.get("drift"), dict)]
    names = [d.name for d in reference.detectors]
    series: dict[str, dict[str, list[Any]]] = {
        n: {key: [] for key in (*SERIES, "status", "rows")} for n in names
    }
    thresholds: dict[str, float | None] = dict.fromkeys(names)
    for row in analyses:
        found = {d["name"]: d for d in row.body["drift"].get("detectors", [])}
        for name in names:
            detector = found.get(name, {})
            for key in (*SERIES, "status", "rows"):
                series[name][key].append(detector.get(key))
            if detector.get("threshold") is not None:
                thresholds[name] = detector["threshold"]
    last = analyses[-1].body["drift"] if analyses else None
    return {
        "ref": version.ref,
        "reference": {
            "inputs": [n for n in names if n != "prediction"],
            "predictions": reference.prediction_source,
            "rows": (version.reference_stats or {}).get("rows"),
        },
        "policy": policy.drift.model_dump(mode="json"),
        "windows": [
            {
                "analysis": row.id,
                "at": audit.as_utc(row.at).isoformat(),
                "role": row.role,
                "requests": row.requests,
            }
            for row in analyses
        ],
        "detectors": [{"name": n, "threshold": thresholds[n], "series": series[n]} for n in names],
        "conclusion": _conclusion(version.ref, reference, analyses, last, policy),
    }


def _conclusion(
    ref: str,
    reference: VersionReference,
    analyses: list[AnalysisRow],
    last: dict[str, Any] | None,
    policy: Policy,
) -> dict[str, Any]:
    if not reference.detectors:
        summary = (
            f"{ref} has no reference statistics: it can't be watched for drift; register it "
            "with --training-data"
        )
        return {"confirmed": False, "drifting": [], "summary": summary}
    if not policy.drift.enabled:
        return {"confirmed": False, "drifting": [], "summary": "drift.enabled is false"}
    if last is None:
        summary = (
            f"no drift analyses of {ref} yet: it needs traffic, and `mlcp controller run` "
            "to analyse its windows"
        )
        return {"confirmed": False, "drifting": [], "summary": summary}
    drifting = list(last.get("drifting") or [])
    if drifting:
        summary = (
            f"drift confirmed in {', '.join(drifting)} (policy: drift.action {policy.drift.action})"
        )
    else:
        summary = f"no drift confirmed over the last {len(analyses)} windows"
    return {"confirmed": bool(drifting), "drifting": drifting, "summary": summary}
