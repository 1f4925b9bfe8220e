"""``mlcp demo``: the main job on the embedded default (what ``make demo`` runs)."""

from __future__ import annotations

import click

from controlplane.cli import Env, local_only
from controlplane.cli.output import progress


@click.command()
@local_only
def demo(env: Env) -> None:
    """Register, evaluate and promote churn models through their gates; print the results."""
    from controlplane.cli.lineage import render_tree
    from controlplane.cli.promote import gate_report
    from controlplane.demo import run_demo
    from controlplane.jsonable import as_json

    result = run_demo(env.cp, progress=progress)
    v = result.version
    for promotion in result.promotions:
        click.echo(f"== mlcp promote {promotion.ref} --to production")
        gate_report(as_json(promotion.to_dict()))
        click.echo("")
    click.echo(f"== mlcp lineage {v.ref}")
    click.echo(render_tree(env.service.lineage(v.ref)))
    click.echo("")
    click.echo(
        f"plain MLflow: mlflow.pytorch.load_model({v.model_uri!r}) reproduces the outputs "
        f"(max |diff| {result.max_abs_diff_plain_mlflow:.2e})"
    )
    check = env.service.verify_audit()
    state = "verified" if check["ok"] else "BROKEN"
    click.echo(f"audit log: {check['rows']} rows, chain {state}")
    click.echo(
        f"next: `mlcp models show {v.ref}`, `mlcp lineage {v.ref} --json`, `mlcp audit list`"
    )
