"""``mlcp shadow NAME@VERSION`` / ``mlcp shadow NAME --off``: mirror a model's traffic to a
version whose answers are recorded, never returned."""

from __future__ import annotations

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json


@click.command()
@click.argument("ref")
@click.option("--off", is_flag=True, help="stop shadowing (REF is then the model's NAME)")
@click.option("--reason", help="why (goes to the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def shadow(env: Env, ref: str, off: bool, reason: str | None, as_json: bool) -> None:
    """Shadow REF (NAME@VERSION): it gets a copy of every request of NAME, and its answers go
    to the report windows only. `mlcp shadow NAME --off` stops it."""
    if off == ("@" in ref):
        hint = f"`mlcp shadow {ref.partition('@')[0]} --off`"
        raise click.BadParameter(
            f"with --off give the model's name alone ({hint})"
            if off
            else f"write NAME@VERSION to shadow a version, or {hint} to stop",
            param_hint="REF",
        )
    result = env.service.unshadow(ref, reason) if off else env.service.shadow(ref, reason)
    name, revision = result["name"], result["revision"]
    if as_json:
        emit_json(result)
    elif result["shadow"] is None:
        click.echo(f"{name} has no shadow (revision {revision})")
    else:
        click.echo(f"{name}@{result['shadow']} shadows {name} (revision {revision})")
