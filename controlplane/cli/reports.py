"""``mlcp report NAME``: write the model's report, one self-contained HTML page."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from controlplane.cli import Env, pass_env


@click.command()
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="where to write it  [default: NAME-report.html]",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="chart only from then on: a duration back from now (90s, 30m, 2h, 7d) or an ISO time",
)
@pass_env
def report(env: Env, name: str, out: Path | None, since: str | None) -> None:
    """Write NAME's report: latency, error rate, traffic share and drift per version over
    time with the rollbacks, promotions and canary steps marked; gate results; lineage. One
    HTML file that opens in any browser without a network."""
    from controlplane.report.since import parse_since
    from controlplane.report.write import write_atomically

    when = None
    if since is not None:
        try:
            when = parse_since(since, datetime.now(UTC))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    html = env.service.report(name, when)
    target = out or Path(f"{name}-report.html")
    try:
        path = write_atomically(target, html)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise click.BadParameter(f"can't write {target}: {why}", param_hint="--out") from None
    click.echo(f"wrote {path} ({len(html.encode()) / 1000:.0f} kB); open it in a browser")
