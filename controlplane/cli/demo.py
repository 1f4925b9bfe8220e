"""``mlcp demo``: the main job on the embedded default (what ``make demo`` runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from controlplane.cli import Env, local_only
from controlplane.cli.deployments import show_deployment
from controlplane.cli.output import progress, table

if TYPE_CHECKING:
    from controlplane.demo import Lifecycle


@click.command()
@click.option("--fast", is_flag=True, help="half-second windows and analyses (for tests)")
@click.option(
    "--scenes/--no-scenes",
    default=True,
    show_default=True,
    help="after the set-up, serve, watch and play the canary, latency and drift scenes",
)
@local_only
def demo(env: Env, fast: bool, scenes: bool) -> None:
    """The lifecycle on the embedded stores: features, training sets, registration with
    lineage and promotion through every gate; then two serving replicas, the rollback
    controller and traffic, and three scenes: a better model's canary walks to production,
    a slower one is rolled back during its canary, and a drift in the live features rolls
    the champion back. Ends with a summary and an HTML report; stops what it started."""
    from controlplane.cli.lineage import render_tree
    from controlplane.cli.promote import gate_report
    from controlplane.demo import run_demo, run_lifecycle
    from controlplane.jsonable import as_json

    result = run_demo(env.cp, progress=progress, interval_s=0.5 if fast else 1.0)
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
    if scenes:
        from controlplane.report import write_report

        lifecycle = run_lifecycle(env.cp, result, click.echo, progress, fast=fast)
        _summary(env, lifecycle)
        page = write_report(env.cp, "churn", env.cp.settings.home / "demo" / "churn-report.html")
        click.echo(f"report: {page} (open it in a browser; `mlcp report churn` rewrites it)")
    check = env.service.verify_audit()
    state = "verified" if check["ok"] else "BROKEN"
    click.echo(f"audit log: {check['rows']} rows, chain {state}")
    click.echo(
        f"next: `mlcp deployments churn`, `mlcp lineage {v.ref}`, `mlcp drift churn@champion`, "
        "`mlcp audit list`"
    )
    if scenes and not all(s.ok for s in lifecycle.scenes):
        raise click.ClickException("a scene did not end as it should; see the lines above")


def _summary(env: Env, lifecycle: Lifecycle) -> None:
    click.echo("")
    click.echo(f"== summary ({lifecycle.seconds:.0f} s)")
    gates = _gate_outcomes(env)
    table(
        [
            {
                "version": f"churn@{v['version']}",
                "state": v["state"],
                "gates": gates.get(f"churn@{v['version']}", "-"),
                "story": (v.get("description") or "").removeprefix("mlcp demo: "),
            }
            for v in env.service.versions("churn")
        ],
        ["version", "state", "gates", "story"],
    )
    click.echo("")
    if lifecycle.deployment:
        click.echo("deployment as the scenes ended (`mlcp deployments churn`):")
        show_deployment(lifecycle.deployment)
    for number, scene in enumerate(lifecycle.scenes, start=1):
        mark = "ok " if scene.ok else "FAILED"
        click.echo(f"scene {number} [{mark}] {scene.title}: {scene.outcome}")
        decided, converged = scene.seconds(scene.decided_at), scene.seconds(scene.converged_at)
        if decided is not None and converged is not None:
            click.echo(
                f"   {decided:.1f} s from onset to the controller's decision, "
                f"{converged:.1f} s to both replicas"
            )
        for line in scene.evidence:
            click.echo(f"   evidence: {line}")
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(lifecycle.statuses.items()))
    click.echo(
        f"traffic: {lifecycle.answered} requests answered ({statuses}), "
        f"{lifecycle.failures} without an answer"
    )


def _gate_outcomes(env: Env) -> dict[str, str]:
    """Each version's latest gate run, from the audit log: passed N/N, or what failed."""
    outcomes: dict[str, str] = {}
    for row in env.service.audit(subject="churn@*", action="model.gates", limit=100):
        if row["subject"] in outcomes:
            continue  # newest first: the latest run wins
        results = (row.get("evidence") or {}).get("results") or []
        failed = [r["gate"] for r in results if not r.get("passed")]
        outcomes[row["subject"]] = (
            f"refused: {', '.join(failed)}" if failed else f"passed {len(results)}/{len(results)}"
        )
    return outcomes
