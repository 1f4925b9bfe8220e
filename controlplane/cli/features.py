"""``mlcp features``: apply versioned definitions, list and show them, materialize, build
training sets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from controlplane.cli import Env, local_only, pass_env
from controlplane.cli.errors import REFUSED
from controlplane.cli.output import emit_json, progress, table

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group()
def features() -> None:
    """Versioned feature views and services on Feast (NAME@VERSION)."""


@features.command()
@click.option(
    "--file", "path", type=_FILE, required=True, help="a Python file defining DEFINITIONS"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@local_only
def apply(env: Env, path: Path, as_json: bool) -> None:
    """Register the definitions in --file; a changed schema needs a new version."""
    from controlplane.shadowing import advice, shadows_beside

    for found in shadows_beside(path.resolve().parent):
        click.echo(f"mlcp: warning: {advice(found.stem, found)}", err=True)
    managed = env.cp.features
    progress(f"applying {path} to Feast project {env.settings.feast_project}")
    report = managed.apply(path, env.settings.actor)
    out = {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}
    if as_json:
        emit_json(out)
        return
    for kind, items in out.items():
        for item in items:
            click.echo(f"{kind:<10}{item}")


@features.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def list_(env: Env, as_json: bool) -> None:
    """List feature views and services, every version."""
    found = env.service.features()
    if as_json:
        emit_json(found)
        return
    rows: list[dict[str, Any]] = [
        {"kind": "view", "ref": v["ref"], "freshness_s": v["freshness_s"],
         "features": ", ".join(f.partition(":")[0] for f in v["fields"])}  # fields: "name:dtype"
        for v in found["views"]
    ] + [
        {"kind": "service", "ref": s["ref"], "features": ", ".join(s["features"]),
         "freshness_s": s["freshness_s"]}
        for s in found["services"]
    ]  # fmt: skip
    if not rows:
        click.echo("no features yet; register some with `mlcp features apply --file features.py`")
        return
    table(rows, ["kind", "ref", "features", "freshness_s"])


@features.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def show(env: Env, ref: str, as_json: bool) -> None:
    """Show a feature service (or, failing that, a view) version, with its materializations."""
    info = env.service.feature(ref)
    if as_json:
        emit_json(info)
        return
    for key, value in info.items():
        if key != "materializations":
            click.echo(f"{key:<14}{value}")
    for m in info.get("materializations", []):
        state = "online" if m["passed"] else "REFUSED"
        click.echo(f"#{m['id']} {m['created_at'][:19]}Z {state} {m['rows']} rows "
                   f"[{m['start'][:19]} .. {m['end'][:19]}] by {m['created_by']}")  # fmt: skip


@features.command()
@click.argument("view")
@click.option("--start", type=click.DateTime(), help="window start (UTC); default 1970-01-01")
@click.option("--end", type=click.DateTime(), help="window end (UTC); default now")
@click.option("--json", "as_json", is_flag=True, help="print the data-quality report as JSON")
@local_only
def materialize(
    env: Env, view: str, start: datetime | None, end: datetime | None, as_json: bool
) -> None:
    """Check VIEW@VERSION's rows with its expectations, then write them online.

    Critical failures refuse the whole batch (exit 1) and leave the online store as it was.
    """
    from features import DataQualityFailed

    begin = (start or datetime(1970, 1, 1)).replace(tzinfo=UTC)
    finish = end.replace(tzinfo=UTC) if end else datetime.now(UTC)
    try:
        result = env.cp.features.materialize(view, begin, finish, env.settings.actor, progress)
    except DataQualityFailed as refused:
        if as_json:
            emit_json({"view": view, "materialized": False, "report": refused.report})
        else:
            _report(refused.report)
        click.echo(f"mlcp: {refused}", err=True)
        raise click.exceptions.Exit(REFUSED) from None
    report = result.report.to_dict()
    if as_json:
        emit_json({"view": view, "materialized": True, "rows": result.rows, "report": report})
    else:
        _report(report)
        click.echo(f"{view}: {result.rows} rows online")


@features.command("training-set")
@click.argument("service")
@click.option(
    "--entities",
    type=_FILE,
    required=True,
    help="parquet/CSV: join keys, event_timestamp and labels",
)
@click.option("--label", "labels", multiple=True, help="label column(s), kept out of drift stats")
@click.option("--out", type=_FILE, required=True, help="where to write the training set (parquet)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@local_only
def training_set(
    env: Env, service: str, entities: Path, labels: tuple[str, ...], out: Path, as_json: bool
) -> None:
    """Build a point-in-time correct training set for SERVICE@VERSION."""
    from features import read_dataset

    progress(f"joining {service} onto {entities}")
    ts = env.cp.features.training_set(service, read_dataset(entities), labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    ts.frame.to_parquet(out, index=False)
    info = {"service": service, "out": str(out), "rows": ts.fingerprint.rows,
            "fingerprint": ts.fingerprint.sha256, "features": list(ts.features)}  # fmt: skip
    if as_json:
        emit_json(info)
    else:
        click.echo(f"{out}: {info['rows']} rows, sha256 {ts.fingerprint.sha256[:12]}")


def _report(report: Mapping[str, Any]) -> None:
    problems = [(f, "FAIL") for f in report.get("failures", [])] + [
        (w, "warn") for w in report.get("warnings", [])
    ]
    if problems:
        table(
            [{"result": r, "expectation": p.get("expectation"), "column": p.get("column"),
              "unexpected": p.get("unexpected_count")} for p, r in problems],
            ["result", "expectation", "column", "unexpected"],
        )  # fmt: skip
