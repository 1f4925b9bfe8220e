"""The one place that maps exceptions to exit codes and one line on stderr.

0  ok
1  refused by policy (a gate, a lost promotion race, a verification that failed)
2  bad usage or input: a bad setting, reference or file
3  an internal error (a bug): set MLCP_DEBUG=1 for the traceback
4  unavailable, retry later: a store or the control API could not be reached (after retries)
5  denied: the API token is missing, unknown or revoked, or its role may not do this
"""

from __future__ import annotations

import os
import sys
import traceback

import click

OK, REFUSED, BAD_INPUT, INTERNAL, UNAVAILABLE, DENIED = 0, 1, 2, 3, 4, 5


_ROOTS = (
    "registry.errors.RegistryError",
    "features.errors.FeatureStoreError",
    "serving.errors.ServingError",
)
_TAMPERED = "registry.errors.ArtifactTampered"  # a verification that failed: refused, exit 1
_UNAVAILABLE = ("registry.errors.RegistryUnavailable", "features.errors.OnlineStoreUnavailable")


class Refused(click.ClickException):
    """A command that ran and said no (exit 1)."""

    exit_code = REFUSED


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr and return its exit code."""
    from controlplane import errors as cp

    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "mlcp"
        _line(f"{exc.format_message()} (see `{where} --help`)")
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        _line(exc.format_message())
        return exc.exit_code
    unavailable = (cp.DatabaseUnavailable, cp.ApiUnavailable, *_loaded(*_UNAVAILABLE))
    table: tuple[tuple[tuple[type[BaseException], ...], int], ...] = (
        ((cp.ConcurrentChange, cp.ApiRefused, *_loaded(_TAMPERED)), REFUSED),
        (unavailable, UNAVAILABLE),
        ((cp.ApiDenied,), DENIED),
        ((cp.ApiFailed,), INTERNAL),
        ((cp.ControlPlaneError, *_loaded(*_ROOTS)), BAD_INPUT),
    )
    for kinds, code in table:
        if isinstance(exc, kinds):
            _line(str(exc))
            # A step that failed because a store was unreachable (a registration that could
            # not reach MLflow, undone) is worth retrying too.
            return UNAVAILABLE if isinstance(exc.__cause__, unavailable) else code
    if _is_database_outage(exc):
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _line(
            f"the control-plane database failed mid-command: {why}; retry later, or check "
            "MLCP_DATABASE_URL"
        )
        return UNAVAILABLE
    if os.environ.get("MLCP_DEBUG"):
        traceback.print_exception(exc)
    _line(f"internal error: {type(exc).__name__}: {exc} (set MLCP_DEBUG=1 for the traceback)")
    return INTERNAL


def _loaded(*names: str) -> tuple[type[BaseException], ...]:
    """Exception classes ("module.Name") of modules already imported: the CLI never imports a
    package just to recognise its errors (a command that never loaded it can't raise them)."""
    found: list[type[BaseException]] = []
    for name in names:
        module, _, attr = name.rpartition(".")
        mod = sys.modules.get(module)
        if mod is not None:
            found.append(getattr(mod, attr))
    return tuple(found)


def _is_database_outage(exc: BaseException) -> bool:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.OperationalError)


def _line(message: str) -> None:
    click.echo(f"mlcp: error: {' '.join(message.split())}", err=True)
