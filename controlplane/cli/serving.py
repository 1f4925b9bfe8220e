"""``mlcp serving windows NAME[@VERSION]``: what the replicas reported of a model's versions."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json, table, when


@click.group()
def serving() -> None:
    """Inspect what serving replicas report."""


@serving.command()
@click.argument("ref")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="how many"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (each window in full)")
@pass_env
def windows(env: Env, ref: str, limit: int, as_json: bool) -> None:
    """The latest report windows of NAME (every version) or NAME@VERSION, newest first."""
    found = env.service.windows(ref, limit)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo(f"no windows reported for {ref} yet; replicas report them while serving it")
        return
    table([_summary(w) for w in found], list(_summary(found[0])))


def _summary(window: dict[str, Any]) -> dict[str, Any]:
    answered = window["requests"] - window["rejected"]
    mean_ms = 1000 * window["latency_sum_s"] / answered if answered else None
    return {
        "ended_at": when(window["ended_at"]),
        "replica": window["replica"],
        "version": window["version"],
        "role": window["role"],
        "requests": window["requests"],
        "errors": window["errors"],
        "rejected": window["rejected"],
        "mean_ms": f"{mean_ms:.2f}" if mean_ms is not None else None,
    }
