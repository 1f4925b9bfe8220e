"""``mlcp deployments [NAME]``: what is live, since when, how it is doing, who serves it."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json, table


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def deployments(env: Env, name: str | None, as_json: bool) -> None:
    """Live versions of every model (or NAME): weights, states, since when, the latest
    analysis, the rollback fallback, and which replicas serve which revision."""
    found = env.service.deployments(name)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo(
            f"{name} is registered but not deployed; `mlcp promote {name}@VERSION`"
            if name
            else "nothing is deployed yet; promote a version with `mlcp promote NAME@VERSION`"
        )
        return
    for model in found:
        show_deployment(model)


def show_deployment(model: dict[str, Any]) -> None:
    click.echo(f"{model['name']}  revision {model['revision']}  since {model['since'][:19]}Z")
    rows = []
    for role in ("champion", "challenger", "shadow"):
        v = model[role]
        if v is None:
            continue
        analysis = v.get("analysis") or {}
        weight = None
        if role == "challenger":
            weight = f"{v['percent']}% of {v['steps']}" + (" paused" if v["paused"] else "")
        rows.append(
            {
                "role": role,
                "version": v["version"],
                "state": v["state"],
                "traffic": weight or ("rest" if role == "champion" else "copy"),
                "cost_per_1k": _cost(v.get("cost") or {}),
                "last_analysis": _analysis(analysis),
            }
        )
    table(rows, ["role", "version", "state", "traffic", "cost_per_1k", "last_analysis"])
    click.echo(f"  fallback: {model['fallback'] or 'none (a rollback would hold)'}")
    if model["hold_reason"]:
        click.echo(f"  holding: {model['hold_reason']}")
    replicas = model["replicas"]
    if not replicas:
        click.echo("  replicas: none reporting")
    for r in replicas:
        state = "stale" if r["stale"] else ("converged" if r["converged"] else "behind")
        split = f"champion {r['champion']}"
        if r["challenger"] is not None:
            split += f", challenger {r['challenger']} at {r['canary_percent']}%"
        click.echo(f"  replica {r['replica']}: revision {r['revision']} ({state}): {split}")
    click.echo()


def _cost(cost: dict[str, Any]) -> str:
    """``0.0042 (1.5 ms/pred)``; only device time without MLCP_DEVICE_HOUR_PRICE."""
    per_prediction = cost.get("device_ms_per_prediction")
    if per_prediction is None:
        return "-"
    device = f"{per_prediction:.3g} device-ms/pred"
    per_1k = cost.get("per_1k")
    return device if per_1k is None else f"{per_1k:.4g} ({device})"


def _analysis(analysis: dict[str, Any]) -> str:
    if not analysis:
        return "-"
    failed = [c["check"] for c in analysis.get("checks", []) if c.get("verdict") == "fail"]
    note = f" ({', '.join(failed)})" if failed else ""
    return f"{analysis['verdict']}{note} on {analysis['requests']} req at {analysis['at'][11:19]}"
