"""``mlcp models``: register, list and show model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from controlplane.cli import Env, local_only, pass_env
from controlplane.cli.output import emit_json, progress, short, table, when
from controlplane.service.base import RegisterFiles


@click.group()
def models() -> None:
    """Register, list and show model versions."""


@models.command("list")
@click.option("--name", help="only this model's versions")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def list_(env: Env, name: str | None, as_json: bool) -> None:
    """List registered model versions."""
    versions = env.service.versions(name)
    if as_json:
        emit_json(versions)
        return
    if not versions:
        click.echo("no models registered yet; register one with `mlcp models register`")
        return
    table(
        [
            {
                "model": v["name"],
                "version": v["version"],
                "state": v["state"],
                "feature_service": v["feature_service"],
                "dataset": short(v["training_data"]["fingerprint"]) if v["training_data"] else None,
                "registered_by": v["registered_by"],
                "registered_at": when(v["registered_at"]),
            }
            for v in versions
        ],
        [
            "model",
            "version",
            "state",
            "feature_service",
            "dataset",
            "registered_by",
            "registered_at",
        ],
    )


@models.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def show(env: Env, ref: str, as_json: bool) -> None:
    """Show one version: REF is NAME@VERSION (churn@3) or NAME@ALIAS (churn@champion)."""
    version = env.service.version(ref)
    if as_json:
        emit_json(version)
        return
    for key, value in _describe(version):
        click.echo(f"{key:<18}{value}")


def _describe(v: dict[str, Any]) -> list[tuple[str, Any]]:
    td = v["training_data"]
    return [
        ("ref", v["ref"]),
        ("state", v["state"]),
        ("model_uri", v["model_uri"]),
        ("logged_model", v["source_uri"]),
        ("format", v["model_format"]),
        ("artifact_sha256", v["artifact_sha256"]),
        ("run_id", v["run_id"]),
        ("feature_service", v["feature_service"] or "-"),
        ("dataset", f"{td['fingerprint']} ({td['rows']} rows)" if td else "-"),
        ("code_version", v["code_version"] or "-"),
        ("params", ", ".join(f"{k}={x}" for k, x in sorted(v["params"].items())) or "-"),
        ("metrics", ", ".join(f"{k}={x:.6g}" for k, x in sorted(v["metrics"].items())) or "-"),
        ("registered_by", v["registered_by"]),
        ("registered_at", when(v["registered_at"])),
        ("idempotency_key", v["idempotency_key"] or "-"),
    ]


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=f"--{what}")
        out[key] = value
    return out


def _metrics(values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key, value in _pairs(values, "metric").items():
        try:
            out[key] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{key}={value!r} is not a number", param_hint="--metric"
            ) from None
    return out


def _names(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise click.BadParameter("name at least one column, e.g. a,b,c", param_hint="--features")
    return names


_FILE = click.Path(path_type=Path, dir_okay=False)


@models.command()
@click.argument("name")
@click.option(
    "--model",
    "model_path",
    type=_FILE,
    required=True,
    help="a torch.save()'d nn.Module or a torch.export.save()'d program",
)
@click.option(
    "--input-example",
    type=_FILE,
    required=True,
    help="a batch of >= 2 inputs: .npy, or the numeric columns of .parquet/.csv",
)
@click.option(
    "--training-data",
    type=_FILE,
    help="the training set (.parquet/.csv): fingerprinted, and its inputs' statistics kept for "
    "drift",
)
@click.option("--label", help="the training data's label column (never an input)")
@click.option(
    "--feature-service",
    help="the feature service version trained on, NAME@VERSION: its features are the inputs",
)
@click.option(
    "--features",
    "input_names",
    metavar="A,B,C",
    help="the model's input columns, in order (without --feature-service)",
)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="a training parameter")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="a metric (number)")
@click.option("--code-version", help="default: the git commit of the current directory")
@click.option("--idempotency-key", help="a CI retry with the same key returns the same version")
@click.option("--description")
@click.option(
    "--format",
    "model_format",
    type=click.Choice(["pt2", "pickle"]),
    default="pt2",
    show_default=True,
    help="pt2 loads anywhere without your code; pickle needs it",
)
@click.option(
    "--unsafe-allow-pickle",
    is_flag=True,
    help="load a torch.save'd --model by unpickling it, which RUNS THE CODE IN THE FILE: only "
    "for files you made; a torch.export.save'd program needs no such trust",
)
@click.option("--json", "as_json", is_flag=True, help="print the registered version as JSON")
@pass_env
def register(
    env: Env,
    name: str,
    model_path: Path,
    input_example: Path,
    training_data: Path | None,
    label: str | None,
    feature_service: str | None,
    input_names: str | None,
    params: tuple[str, ...],
    metrics: tuple[str, ...],
    code_version: str | None,
    idempotency_key: str | None,
    description: str | None,
    model_format: str,
    unsafe_allow_pickle: bool,
    as_json: bool,
) -> None:
    """Register a PyTorch model as a new version of NAME, with its lineage.

    With --training-data, the version's reference statistics cover exactly the model's
    inputs (the feature service's features, or --features), in input order."""
    from registry.code_version import detect_code_version

    version = env.service.register(
        RegisterFiles(
            name=name,
            model=model_path,
            input_example=input_example,
            training_data=training_data,
            label=label,
            feature_service=feature_service,
            input_names=_names(input_names),
            params=_pairs(params, "param"),
            metrics=_metrics(metrics),
            code_version=code_version or detect_code_version(),
            idempotency_key=idempotency_key,
            description=description,
            model_format=model_format,
            unsafe_allow_pickle=unsafe_allow_pickle,
        ),
        progress=progress,
    )
    if as_json:
        emit_json(version)
    else:
        click.echo(
            f"{version['ref']}  {version['model_uri']}  sha256 {short(version['artifact_sha256'])}"
        )


@models.command()
@click.option(
    "--older-than",
    type=click.IntRange(0, 10**9),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="also registrations pending at least this long whose process can't be checked "
    "(another host); those whose process is gone are recovered at once",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@local_only
def recover(env: Env, older_than: int, as_json: bool) -> None:
    """Undo registrations that a killed process left half-done (MLflow objects, their
    artifacts and intent rows)."""
    from datetime import timedelta

    cleaned = env.cp.registry.recover(timedelta(seconds=older_than))
    if as_json:
        emit_json({"recovered": cleaned})
    else:
        click.echo(f"recovered {len(cleaned)} pending registration(s)")
