"""``mlcp promote`` / ``approve`` / ``reject`` / ``gates``: the promotion workflow for CI."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.errors import REFUSED
from controlplane.cli.output import emit_json, progress, table
from controlplane.service.base import ACCEPTED


@click.command()
@click.argument("ref")
@click.option(
    "--to",
    "target",
    type=click.Choice(["production", "canary"]),
    default="production",
    show_default=True,
    help="production: the champion now (or after a canary, with --canary); canary: the "
    "challenger at --canary PERCENT or the policy's first canary step",
)
@click.option(
    "--canary",
    "canary_percent",
    type=click.IntRange(0, 99),
    is_flag=False,
    flag_value=0,
    metavar="[PERCENT]",
    help="go there through a canary: PERCENT of traffic first (default: the policy's first "
    "canary step); `mlcp controller run` walks it through the policy's steps",
)
@click.option("--json", "as_json", is_flag=True, help="print the gate report as JSON")
@pass_env
def promote(env: Env, ref: str, target: str, canary_percent: int | None, as_json: bool) -> None:
    """Run REF's gates and promote it. Exit 0 promoted (or awaiting approval), 1 refused.

    Both `--to canary` and `--to production --canary` start a canary that `mlcp controller
    run` walks to production through the policy's steps."""
    progress(f"running the gates of {ref}")
    # --canary alone (0) or --to canary: the policy's first canary step.
    canary = canary_percent is not None or target == "canary"
    result = env.service.promote(ref, canary_percent or None, canary=canary)
    _finish(result, as_json)


@click.command()
@click.argument("ref")
@click.option("--reason", help="why (goes to the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def approve(env: Env, ref: str, reason: str | None, as_json: bool) -> None:
    """Approve REF, whose gates passed under a policy that requires a person."""
    _finish(env.service.approve(ref, reason), as_json)


@click.command()
@click.argument("ref")
@click.option("--reason", required=True, help="why (goes to the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def reject(env: Env, ref: str, reason: str, as_json: bool) -> None:
    """Reject REF, which was awaiting approval."""
    result = env.service.reject(ref, reason)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{result['ref']} rejected: {reason}")


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def gates(env: Env, ref: str, as_json: bool) -> None:
    """Show every gate run recorded for REF, newest first."""
    runs = env.service.gate_runs(ref)
    if as_json:
        emit_json(runs)
        return
    if not runs:
        click.echo(f"no gate runs for {ref}; run `mlcp promote {ref}`")
    for run in runs:
        click.echo(
            f"#{run['id']} {run['created_at'][:19]}Z {run['outcome']} by {run['created_by']}"
            f" (policy {run['policy_sha256'][:12]})"
        )
        _gate_table(run["results"])


def gate_report(result: dict[str, Any]) -> None:
    """The gate table and the outcome line of a promotion result, as people read them."""
    _gate_table(result["gates"])
    click.echo(f"{result['ref']}: {result['outcome']} ({result['reason']})")


def _finish(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        gate_report(result)
    if result["outcome"] not in ACCEPTED:
        if not as_json:
            click.echo(f"mlcp: {result['ref']} {result['outcome']}: {result['reason']}", err=True)
        raise click.exceptions.Exit(REFUSED)


def _gate_table(results: list[dict[str, Any]]) -> None:
    rows = [
        {
            "gate": r["gate"],
            "result": "pass"
            if r["passed"]
            else ("FAIL" if r["severity"] == "critical" else "warn"),
            "observed": _fmt(r["observed"]),
            "threshold": r["threshold"],
            "note": _note(r["details"]),
        }
        for r in results
    ]
    if rows:
        table(rows, ["gate", "result", "observed", "threshold", "note"])


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _note(details: dict[str, Any]) -> str:
    for key in ("error", "note", "reason", "message"):
        if details.get(key):
            return str(details[key])[:80]
    if details.get("warnings"):
        return f"{len(details['warnings'])} warning(s)"
    return ""
