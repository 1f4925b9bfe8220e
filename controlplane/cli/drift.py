"""``mlcp drift NAME@V``: each detector's statistic over the recent analysis windows (a
sparkline), its CUSUM against its threshold, and what the detector concluded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json, table

TICKS = "▁▂▃▄▅▆▇█"


@click.command()
@click.argument("ref")
@click.option(
    "--windows",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="how many recent analysis windows to show",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def drift(env: Env, ref: str, windows: int, as_json: bool) -> None:
    """Drift of REF (NAME@VERSION or NAME@ALIAS): per input feature and for predictions,
    PSI over the last windows, the latest statistics, the CUSUM against its threshold."""
    report = env.service.drift(ref, windows)
    if as_json:
        emit_json(report)
        return
    policy = report["policy"]
    shown = len(report["windows"])
    click.echo(
        f"{report['ref']}  drift over the last {shown} analysis window(s); one false alarm per "
        f"{policy['target_run_length']} windows, effect floor PSI >= {policy['min_psi']:g}"
    )
    if report["detectors"] and shown:
        table([_row(d, policy["min_psi"]) for d in report["detectors"]],
              ["detector", "psi", "last_psi", "js", "p", "cusum", "status"])  # fmt: skip
    click.echo(report["conclusion"]["summary"])


def _row(detector: dict[str, Any], min_psi: float) -> dict[str, Any]:
    series = detector["series"]
    last = {key: _last(values) for key, values in series.items()}
    threshold = detector["threshold"]
    cusum = "-" if last["cusum"] is None else f"{last['cusum']:.2f}"
    return {
        "detector": detector["name"],
        "psi": sparkline(series["psi"], floor=2 * min_psi),
        "last_psi": _number(last["psi"], ".3f"),
        "js": _number(last["js"], ".3f"),
        "p": _number(last["p_value"], ".2g"),
        "cusum": f"{cusum} / {threshold:.2f}" if threshold is not None else cusum,
        "status": (last["status"] or "-").upper() if last["status"] == "drift" else last["status"],
    }


def sparkline(values: Sequence[float | None], floor: float = 0.0) -> str:
    """One character per value, scaled to the largest (at least ``floor``, so noise around
    zero stays low); a window not judged is a space."""
    present = [v for v in values if v is not None]
    top = max([floor, *present]) or 1.0
    return "".join(
        " " if v is None else TICKS[min(len(TICKS) - 1, int(v / top * (len(TICKS) - 1) + 0.5))]
        for v in values
    )


def _last(values: Sequence[Any]) -> Any:
    return next((v for v in reversed(values) if v is not None), None)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
