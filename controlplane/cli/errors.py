"""The one place that maps exceptions to exit codes and one line on stderr.

0  ok
1  refused by policy (a gate, a verification that failed)
2  bad usage or input: a bad setting, reference, file or unreachable store
3  an internal error (a bug): set MLCP_DEBUG=1 for the traceback
"""

from __future__ import annotations

import os
import sys
import traceback

import click

OK, REFUSED, BAD_INPUT, INTERNAL = 0, 1, 2, 3


class Refused(click.ClickException):
    """A command that ran and said no (exit 1)."""

    exit_code = REFUSED


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr and return its exit code."""
    from controlplane.errors import ConcurrentChange, ControlPlaneError

    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "mlcp"
        _line(f"{exc.format_message()} (see `{where} --help`)")
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        _line(exc.format_message())
        return exc.exit_code
    if isinstance(exc, ConcurrentChange):
        _line(str(exc))
        return REFUSED
    if isinstance(exc, (ControlPlaneError, *_domain_roots())):
        _line(str(exc))
        return BAD_INPUT
    if _is_database_outage(exc):
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _line(f"the control-plane database failed mid-command: {why}; check MLCP_DATABASE_URL")
        return BAD_INPUT
    if os.environ.get("MLCP_DEBUG"):
        traceback.print_exception(exc)
    _line(f"internal error: {type(exc).__name__}: {exc} (set MLCP_DEBUG=1 for the traceback)")
    return INTERNAL


def _domain_roots() -> tuple[type[BaseException], ...]:
    """The other packages' roots, only when already imported: the CLI never imports them to fail."""
    roots: list[type[BaseException]] = []
    for module, name in (
        ("registry.errors", "RegistryError"),
        ("features.errors", "FeatureStoreError"),
        ("serving.errors", "ServingError"),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            roots.append(getattr(mod, name))
    return tuple(roots)


def _is_database_outage(exc: BaseException) -> bool:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.OperationalError)


def _line(message: str) -> None:
    click.echo(f"mlcp: error: {' '.join(message.split())}", err=True)
