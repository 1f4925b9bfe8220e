"""``mlcp controller run``: the rollback controller, one active at a time."""

from __future__ import annotations

import json
import re
import signal
import threading
from typing import Any

import click

from controlplane.cli import Env, local_only
from controlplane.cli.output import progress

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


class Duration(click.ParamType):
    """Seconds, as ``1s``, ``500ms``, ``2m`` or a bare number of seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(str(value))
            if match is None:
                self.fail(f"{value!r} is not a duration; write 1s, 500ms or 2m", param, ctx)
            number, unit = float(match.group(1)), match.group(2) or "s"
            seconds = number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
        if not 0.01 <= seconds <= 3600:
            self.fail(f"{value!r} is out of range; give between 10ms and 60m", param, ctx)
        return seconds


@click.group()
def controller() -> None:
    """The rollback controller: canary steps, promotion and rollback on SLO regression."""


@controller.command()
@click.option("--interval", type=Duration(), default="1s", show_default=True,
              help="how often to read new windows and decide")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="analyse and report; move nothing")
@click.option("--once", is_flag=True, help="one pass over every live model, then exit")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="serve Prometheus metrics on this port (127.0.0.1)")  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON line per event on stdout")
@local_only
def run(
    env: Env,
    interval: float,
    dry_run: bool,
    once: bool,
    metrics_port: int | None,
    metrics_host: str,
    as_json: bool,
) -> None:
    """Watch every live version: walk canaries through their policy's steps, promote them,
    and roll back a canary or a champion whose windows breach the SLO.

    Only one controller acts at a time (a PostgreSQL advisory lock, or a lock file beside
    the SQLite database); start a second one as a standby: it takes over within an interval
    of the first one dying. Stop with Ctrl-C or SIGTERM.
    """
    from controlplane.controller import Controller

    ctl = Controller(env.cp, interval_s=interval, dry_run=dry_run)
    ctl.events.subscribe(_printer(as_json))
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, metrics_host, registry=ctl.metrics.registry)
    if once:
        if not ctl.lead():
            progress("another controller is active; this one would stand by (nothing done)")
            return
        try:
            ctl.tick()
        finally:
            ctl.lease.release()
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mode = "dry run: analyses only" if dry_run else "acting"
    progress(f"{ctl.identity}: every {interval:g} s, {mode}; standing by until it leads")
    ctl.run(stop)


def _printer(as_json: bool) -> Any:
    quiet = {"analysis"}

    def show(event: Any) -> None:
        if as_json:
            click.echo(json.dumps(event.to_dict(), default=str), nl=True)
            return
        if event.kind in quiet:
            return
        subject = f"{event.model}@{event.version}" if event.model else ""
        detail = event.detail
        why = detail.get("reason") or detail.get("why") or detail.get("error") or ""
        if event.kind == "decision":
            why = f"{detail.get('action')}: {detail.get('reason')}"
        click.echo(f"{event.at:%H:%M:%S} {event.kind:<15} {subject} {why}".rstrip())

    return show
