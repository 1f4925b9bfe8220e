"""Errors raised by the control plane.

    ControlPlaneError
    ├── SettingsError          a bad MLCP_* variable or mlcp.toml key
    ├── DatabaseUnavailable    the control-plane database cannot be reached
    ├── SchemaOutOfDate        the database is behind the code's migrations
    └── AuditChainBroken       `audit verify` found an edited, inserted or deleted row

The CLI maps every root (this one, RegistryError, FeatureStoreError, ServingError)
to an exit code and one line on stderr in one place: ``controlplane/cli/errors.py``.
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Root of every error the control plane raises."""


class SettingsError(ControlPlaneError):
    """A setting that does not validate; names the variable to fix."""

    def __init__(self, variable: str, why: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {why}")


class DatabaseUnavailable(ControlPlaneError):
    """The control-plane database cannot be reached."""

    def __init__(self, url: str, why: str) -> None:
        self.url = url
        super().__init__(
            f"cannot connect to the control-plane database at {url}: {why}; "
            "check MLCP_DATABASE_URL and that the server is running"
        )


class SchemaOutOfDate(ControlPlaneError):
    """The database schema is behind the code."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"the control-plane database is at revision {current or 'base'}, the code needs "
            f"{head}; run `mlcp db upgrade`"
        )


class AuditChainBroken(ControlPlaneError):
    """The audit log's hash chain does not verify."""

    def __init__(self, seq: int | None, why: str) -> None:
        self.seq = seq
        super().__init__(f"audit chain broken at row {seq}: {why}")
