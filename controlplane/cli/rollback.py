"""``mlcp rollback NAME`` and ``mlcp canary pause|resume|abort NAME``: traffic moves by hand,
between versions that already passed their gates (no gate runs again)."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json


@click.command()
@click.argument("name")
@click.option("--to", "to", type=click.IntRange(1, 2**31 - 1), metavar="VERSION",
              help="the version to return to (default: the canary goes, else the previous good "
              "version takes over)")  # fmt: skip
@click.option("--reason", required=True, help="why (goes to the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def rollback(env: Env, name: str, to: int | None, reason: str, as_json: bool) -> None:
    """Roll NAME back: remove its canary, or hand production back to the previous good
    version (or --to VERSION). Audited as a rollback; replicas follow within their poll."""
    _print(env.service.rollback(name, reason, to), as_json)


@click.group()
def canary() -> None:
    """Pause, resume or abort a model's canary."""


def _canary_command(action: str, help_text: str) -> click.Command:
    @click.command(action, help=help_text)
    @click.argument("name")
    @click.option("--reason", help="why (goes to the audit log)")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    @pass_env
    def command(env: Env, name: str, reason: str | None, as_json: bool) -> None:
        _print(env.service.canary(name, action, reason), as_json)

    return command


for _action, _help in (
    ("pause", "Hold NAME's canary at its weight (failures still roll it back)."),
    ("resume", "Let NAME's paused or held canary go on through its steps."),
    ("abort", "Remove NAME's canary now; the champion takes all traffic (a rollback)."),
):
    canary.add_command(_canary_command(_action, _help))


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    before, after = result["before"], result["after"]
    click.echo(
        f"{result['name']}: {result['action']}: champion {before.get('champion')} -> "
        f"{after.get('champion')}, challenger {before.get('challenger')} -> "
        f"{after.get('challenger')} (revision {result['revision']}): {result['reason']}"
    )
