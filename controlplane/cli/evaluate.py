"""``mlcp evaluate NAME@VERSION``: task metrics of a version, and of its champion, on one file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json, progress, short, table
from controlplane.service.base import EvaluateFiles


@click.command()
@click.argument("ref")
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="the labelled rows: .parquet or .csv",
)
@click.option("--label", required=True, help="the label column")
@click.option(
    "--task",
    type=click.Choice(["classification", "regression"]),
    default="classification",
    show_default=True,
)
@click.option(
    "--features",
    metavar="A,B,C",
    help="the model's input columns, in order (default: every numeric column but the label)",
)
@click.option(
    "--feature-service",
    metavar="NAME@VERSION",
    help="build the rows from Feast: --data then holds entity keys, event_timestamp and labels",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def evaluate(
    env: Env,
    ref: str,
    data: Path,
    label: str,
    task: str,
    features: str | None,
    feature_service: str | None,
    as_json: bool,
) -> None:
    """Evaluate REF (NAME@VERSION or NAME@ALIAS) on labelled data, and the model's champion on
    the same rows; the metrics are logged to MLflow and kept for promotion gates."""
    result = env.service.evaluate(
        EvaluateFiles(ref, data, label, task, _columns(features), feature_service),
        progress=progress,
    )
    if as_json:
        emit_json(result)
        return
    candidate, champion = result["candidate"], result["champion"]
    cand = candidate["ref"]
    click.echo(
        f"dataset    sha256 {short(candidate['dataset_fingerprint'])}, "
        f"{candidate['dataset_rows']} rows  {candidate['dataset_source']}"
    )
    click.echo(f"task       {candidate['task']}, label {candidate['label_column']}")
    click.echo(f"candidate  {cand}  (MLflow run {candidate['mlflow_run_id']})")
    if champion is None:
        click.echo(f"champion   - ({candidate['name']} has none, or it is {cand})")
    else:
        click.echo(f"champion   {champion['ref']}  (MLflow run {champion['mlflow_run_id']})")
    click.echo()
    table(*_metrics_table(candidate, champion))


def _columns(features: str | None) -> list[str] | None:
    if features is None:
        return None
    names = [name.strip() for name in features.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one column, e.g. a,b,c", param_hint="--features")
    return names


def _metrics_table(
    candidate: dict[str, Any], champion: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    mine_all = candidate["metrics"]
    if champion is None:
        rows = [{"metric": k, "candidate": _number(v)} for k, v in sorted(mine_all.items())]
        return rows, ["metric", "candidate"]
    rows = []
    theirs_all = champion["metrics"]
    for key in sorted({*mine_all, *theirs_all}):
        mine, theirs = mine_all.get(key), theirs_all.get(key)
        delta = None if mine is None or theirs is None else mine - theirs
        rows.append(
            {
                "metric": key,
                "candidate": _number(mine),
                "champion": _number(theirs),
                "delta": _number(delta, "+"),
            }
        )
    return rows, ["metric", "candidate", "champion", "delta"]


def _number(value: float | None, sign: str = "") -> str | None:
    return None if value is None else f"{value:{sign}.4f}"
