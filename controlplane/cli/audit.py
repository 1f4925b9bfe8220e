"""``mlcp audit``: read and verify the hash-chained audit log."""

from __future__ import annotations

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.errors import Refused
from controlplane.cli.output import emit_json, short, table, when


@click.group()
def audit() -> None:
    """Read and verify the append-only audit log."""


@audit.command("list")
@click.option("--subject", help="one subject (churn@3), or every version of a model (churn@*)")
@click.option("--action", help="one action, e.g. model.register")
@click.option("--limit", type=click.IntRange(1, 10**6), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def list_(env: Env, subject: str | None, action: str | None, limit: int, as_json: bool) -> None:
    """List audit rows, newest first."""
    rows = env.service.audit(subject=subject, action=action, limit=limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("the audit log is empty")
        return
    table(
        [
            {
                "seq": r["seq"],
                "time": when(r["ts"]),
                "actor": r["actor"],
                "action": r["action"],
                "subject": r["subject"],
                "reason": r["reason"],
                "hash": short(r["hash"]),
            }
            for r in rows
        ],
        ["seq", "time", "actor", "action", "subject", "reason", "hash"],
    )


@audit.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def verify(env: Env, as_json: bool) -> None:
    """Recompute the hash chain; exit 1 naming the first bad row if anything was tampered with."""
    result = env.service.verify_audit()
    if as_json:
        emit_json(result)
        if not result["ok"]:
            raise click.exceptions.Exit(1)
        return
    if not result["ok"]:
        raise Refused(f"audit chain broken at row {result['bad_seq']}: {result['problem']}")
    click.echo(f"ok: {result['rows']} rows verified; head {result['head_hash']}")
