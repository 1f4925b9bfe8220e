"""``mlcp``: the command line. Start-up stays light: every heavy import is inside a command.

Commands parse and print; their work is a `ControlService` call, run on the stores here or,
with ``MLCP_API_URL`` and ``MLCP_TOKEN``, sent to the control API.

Exit codes: 0 ok, 1 refused by policy, 2 bad usage or input, 3 internal error, 4 unavailable
(retry later), 5 denied (the API token may not).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from controlplane.cli.errors import BAD_INPUT, OK, report

if TYPE_CHECKING:
    from controlplane.context import ControlPlane
    from controlplane.service.base import ControlService
    from controlplane.settings import Settings


class Env:
    """What commands share: settings (validated at start-up), the service every command
    calls (lazy), and for the few commands that work on the stores themselves, the control
    plane.

    With ``MLCP_API_URL`` and ``MLCP_TOKEN`` the service is the control API (`RemoteService`);
    otherwise it runs here on the stores (`LocalService`). Commands only parse and print.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cp: ControlPlane | None = None
        self._service: ControlService | None = None

    @property
    def service(self) -> ControlService:
        if self._service is None:
            if self.settings.remote:
                from controlplane.service.remote import RemoteService

                self._service = RemoteService.from_settings(self.settings)
            else:
                from controlplane.service.local import LocalService

                self._service = LocalService(self.cp, self.settings.actor)
        return self._service

    @property
    def cp(self) -> ControlPlane:
        """The stores themselves: refused in remote mode (`LocalOnly`, naming the command)."""
        if self._cp is None:
            self.require_local()
            from controlplane.cli.output import progress
            from controlplane.context import ControlPlane

            self._cp = ControlPlane(self.settings)
            if self._cp.created_schema:
                progress("created the control-plane schema (first use of this database)")
        return self._cp

    def require_local(self) -> None:
        """Refuse, naming the command, when it would reach past the API to the stores."""
        if self.settings.remote:
            from controlplane.errors import LocalOnly

            raise LocalOnly(click.get_current_context().command_path)

    def close(self) -> None:
        close = getattr(self._service, "close", None)
        if close is not None:
            close()
        if self._cp is not None:
            self._cp.close()


pass_env = click.make_pass_decorator(Env)


def local_only(command: Callable[..., Any]) -> Callable[..., Any]:
    """`pass_env` for a command that works on the stores themselves (serve, db, demo...): in
    remote mode it is refused (exit 2) before it imports or touches anything."""

    @functools.wraps(command)
    def checked(env: Env, *args: Any, **kwargs: Any) -> Any:
        env.require_local()
        return command(env, *args, **kwargs)

    return pass_env(checked)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mlcp", prog_name="mlcp")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """mlcp: register PyTorch models with lineage, promote them through gates, serve them
    with features from Feast, and roll them back on their own when they breach their SLO or
    drift; every change audited.

    Settings come from MLCP_* environment variables and an optional mlcp.toml; the
    default keeps everything under ./.mlcp (SQLite, local artifacts). With MLCP_API_URL and
    MLCP_TOKEN set, commands go through the control API (`mlcp api`) instead.

    Exit codes: 0 ok, 1 refused by policy, 2 bad usage or input, 3 internal error,
    4 unavailable (retry later), 5 denied (the API token may not).
    """
    from controlplane.settings import load_settings

    env = Env(load_settings())
    ctx.obj = env
    ctx.call_on_close(env.close)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def settings(env: Env, as_json: bool) -> None:
    """Show the settings in effect (passwords masked)."""
    from controlplane.cli.output import emit_json

    values = env.settings.redacted()
    if as_json:
        emit_json(values)
        return
    for key, value in values.items():
        click.echo(f"MLCP_{key.upper():<24}{value}")


def _register_commands() -> None:
    from controlplane.cli import (
        api,
        audit,
        controller,
        db,
        demo,
        deployments,
        drift,
        evaluate,
        features,
        lineage,
        models,
        policy,
        promote,
        reports,
        rollback,
        serve,
        serving,
        shadow,
    )

    cli.add_command(db.db)
    cli.add_command(models.models)
    cli.add_command(lineage.lineage)
    cli.add_command(audit.audit)
    cli.add_command(demo.demo)
    cli.add_command(evaluate.evaluate)
    cli.add_command(policy.policy)
    cli.add_command(api.api)
    cli.add_command(api.tokens)
    cli.add_command(features.features)
    cli.add_command(serve.serve)
    cli.add_command(serving.serving)
    cli.add_command(shadow.shadow)
    cli.add_command(controller.controller)
    cli.add_command(deployments.deployments)
    cli.add_command(drift.drift)
    cli.add_command(reports.report)
    cli.add_command(rollback.rollback)
    cli.add_command(rollback.canary)
    for command in (promote.promote, promote.approve, promote.reject, promote.gates):
        cli.add_command(command)


_register_commands()


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it), as lastResort does."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class _LibraryNoise(logging.Filter):
    """Drops what libraries say below WARNING and the deprecations they trigger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DeprecationWarning" not in record.getMessage()


def _quiet_libraries() -> None:
    """Keep library chatter off the CLI's stderr; idempotent (tests call ``main`` often).

    Libraries set INFO on their own loggers (GX does at import) and some call basicConfig;
    GX also routes warnings through logging (captureWarnings). A root handler that passes
    only warnings, minus deprecations, keeps stderr for mlcp's own lines. Deprecations in
    MLflow, Feast and GX are their maintainers' to fix; the test suite still turns them
    into errors (allow-listed by text).
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    root = logging.getLogger()
    if any(isinstance(f, _LibraryNoise) for h in root.handlers for f in h.filters):
        return
    handler = _Stderr()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("mlcp: %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_LibraryNoise())
    root.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run, then map any error to one stderr line and an exit code."""
    # Our progress lines are the CLI's stderr; MLflow's INFO chatter and progress bars are not.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    _quiet_libraries()
    try:
        # Without standalone mode click returns the code of a click.exceptions.Exit.
        result = cli.main(args=argv, prog_name="mlcp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mlcp: aborted", err=True)
        return BAD_INPUT
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as exc:
        return report(exc)
    except Exception as exc:
        return report(exc)
    return result if isinstance(result, int) else OK


def run() -> NoReturn:
    """The ``mlcp`` executable: `main`, then exit without tearing the interpreter down.

    Everything a command stores is committed before it returns; what remains at exit is
    freeing memory module by module, which with torch, MLflow and pandas loaded takes
    0.5-1 s of a 2-core machine (measured: longer than the command's own work in CI).
    Exit the way the interpreter would, minus that: wait for non-daemon threads (as
    ``threading._shutdown``, which the interpreter calls), run the atexit handlers
    (logging's flush, MLflow's, temporary folders' finalizers), flush stdout and stderr,
    then ``os._exit``. Tests call `main`, which returns."""
    import atexit
    import contextlib
    import threading

    code = main()
    # What the interpreter's own exit does first: stop idle executor workers (concurrent.
    # futures registers that with threading), then wait for the other non-daemon threads.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (mlcp ... | head)
            stream.flush()
    os._exit(code if 0 <= code <= 255 else 1)


if __name__ == "__main__":
    run()
