"""What is live, for people and CI: ``mlcp deployments`` and ``GET /v1/deployments``.

    views = deployments(cp)                   # every model serving something
    views = deployments(cp, "churn")          # one model (ModelNotFound if unknown)
    views[0]["converged"]                     # every live replica serves this revision

Per model: who is champion, challenger (weight, steps, paused) and shadow, since when, at
which revision; the fallback a rollback would return to; why the controller holds, if it
does; the latest analysis of each live version; and which replicas serve what, from their
heartbeats (a replica not heard from for ``stale_after_s`` is listed as stale). Each live
version's ``cost`` over the last `COST_WINDOW`: device-seconds, predictions answered, device
milliseconds per prediction and, with ``MLCP_DEVICE_HOUR_PRICE``, the cost of 1,000
predictions (so a canary twice as expensive as its champion shows before it goes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from controlplane import audit
from controlplane.controller.records import STALE_AFTER_S
from controlplane.db.models import AnalysisRow, ModelRow, ModelVersionRow
from controlplane.errors import NoPolicy
from controlplane.serving.windows import replicas, serving_costs
from registry import validate_model_name

if TYPE_CHECKING:
    from controlplane.context import ControlPlane

COST_WINDOW = timedelta(hours=1)


def deployments(
    cp: ControlPlane,
    name: str | None = None,
    now: datetime | None = None,
    stale_after_s: float = STALE_AFTER_S,
) -> list[dict[str, Any]]:
    """Every live model (or ``name``) as a dict; see the module docstring."""
    now = now or audit.utcnow()
    query = select(ModelRow).order_by(ModelRow.name)
    if name is not None:
        query = query.where(ModelRow.name == validate_model_name(name))
    with cp.sessions() as session:
        rows = session.execute(query).scalars().all()
        states = _states(session, [r.name for r in rows])
        latest = _latest_analyses(session, rows)
    if name is not None and not rows:
        cp.registry.versions(name)  # ModelNotFound naming the fix, when nothing is registered
        return []  # registered, never deployed
    heard = replicas(cp.sessions)
    out = []
    for row in rows:
        if name is None and row.champion_version is None and row.challenger_version is None:
            continue
        out.append(_view(cp, row, states, latest, heard, now, stale_after_s))
    return out


def _view(
    cp: ControlPlane,
    row: ModelRow,
    states: dict[tuple[str, int], str],
    latest: dict[tuple[str, int], dict[str, Any]],
    heard: list[dict[str, Any]],
    now: datetime,
    stale_after_s: float,
) -> dict[str, Any]:
    costs = serving_costs(cp.sessions, row.name, now - COST_WINDOW)
    price = cp.settings.device_hour_price

    def version(v: int | None) -> dict[str, Any] | None:
        if v is None:
            return None
        return {
            "version": v,
            "state": states.get((row.name, v)),
            "analysis": latest.get((row.name, v)),
            "cost": cost_view(*costs.get(v, (0.0, 0)), price),
        }

    challenger = version(row.challenger_version)
    if challenger is not None:
        challenger.update(
            percent=row.canary_percent, paused=row.canary_paused, steps=_steps(cp, row.name)
        )
    serving = [
        view
        for r in heard
        if (view := _replica(r, row.name, row.revision, now, stale_after_s)) is not None
    ]
    live = [r for r in serving if not r["stale"]]
    return {
        "name": row.name,
        "revision": row.revision,
        "since": audit.as_utc(row.step_started_at or row.updated_at).isoformat(),
        "champion": version(row.champion_version),
        "challenger": challenger,
        "shadow": version(row.shadow_version),
        "fallback": cp.rollouts.fallback(row.name),
        "hold_reason": row.hold_reason,
        "replicas": serving,
        "converged": bool(live) and all(r["revision"] == row.revision for r in live),
    }


def cost_view(device_s: float, answered: int, price: float) -> dict[str, Any]:
    """A version's cost over `COST_WINDOW`; ``per_1k`` is None without a price or traffic."""
    from serving.outcomes import cost_per_1k

    per_1k = cost_per_1k(device_s, answered, price) if price > 0 else None
    return {
        "window_s": COST_WINDOW.total_seconds(),
        "device_s": round(device_s, 6),
        "predictions": answered,
        "device_ms_per_prediction": round(device_s / answered * 1000, 6) if answered else None,
        "per_1k": round(per_1k, 8) if per_1k is not None else None,
        "device_hour_price": price or None,
    }


def _replica(
    heartbeat: dict[str, Any], name: str, revision: int, now: datetime, stale_after_s: float
) -> dict[str, Any] | None:
    served = heartbeat.get("serving", {}).get(name)
    if served is None:
        return None
    seen = datetime.fromisoformat(heartbeat["seen_at"])
    return {
        "replica": heartbeat["replica"],
        "seen_at": heartbeat["seen_at"],
        "stale": now - seen > timedelta(seconds=stale_after_s),
        "revision": served.get("revision"),
        "champion": served.get("champion"),
        "challenger": served.get("challenger"),
        "canary_percent": served.get("canary_percent"),
        "shadow": served.get("shadow"),
        "standby": [s for s in heartbeat.get("standby", []) if s.startswith(f"{name}@")],
        "failures": {
            k: v for k, v in heartbeat.get("failures", {}).items() if k.startswith(f"{name}@")
        },
        "converged": served.get("revision") == revision,
    }


def _states(session: Any, names: list[str]) -> dict[tuple[str, int], str]:
    if not names:
        return {}
    rows = session.execute(
        select(ModelVersionRow.model_name, ModelVersionRow.version, ModelVersionRow.state).where(
            ModelVersionRow.model_name.in_(names), ModelVersionRow.version.is_not(None)
        )
    ).all()
    return {(n, v): s for n, v, s in rows}


def _latest_analyses(
    session: Any, models: Sequence[ModelRow]
) -> dict[tuple[str, int], dict[str, Any]]:
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for model in models:
        for v in (model.champion_version, model.challenger_version):
            if v is None:
                continue
            row = session.execute(
                select(AnalysisRow)
                .where(AnalysisRow.model_name == model.name, AnalysisRow.version == v)
                .order_by(AnalysisRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if row is not None:
                out[(model.name, v)] = {
                    "at": audit.as_utc(row.at).isoformat(),
                    "verdict": row.verdict,
                    "requests": row.requests,
                    "revision": row.revision,
                    "checks": [
                        {k: c.get(k) for k in ("check", "verdict", "observed", "threshold")}
                        for c in row.body.get("checks", [])
                    ],
                    "decision": row.body.get("decision"),
                }
    return out


def _steps(cp: ControlPlane, name: str) -> list[int]:
    try:
        return list(cp.policies.current(name).policy.canary.steps)
    except NoPolicy:
        from controlplane.policy import Canary

        return list(Canary().steps)
