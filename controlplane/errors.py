"""Errors raised by the control plane.

    ControlPlaneError
    ├── SettingsError          a bad MLCP_* variable or mlcp.toml key
    ├── DatabaseUnavailable    the control-plane database cannot be reached
    ├── SchemaOutOfDate        the database is behind the code's migrations
    ├── InvalidPolicy          a policy file with a bad key or value (names the key)
    ├── NoPolicy               promotion asked for a model that has no policy yet
    ├── InvalidTransition      the version is not in a state that allows the request
    │   └── NoFallback         a rollback with no good version to return to
    ├── ConcurrentChange       the model changed between the gates and the transition (exit 1)
    ├── InvalidUpload          an uploaded file that is not what its name says, or not there
    ├── InvalidDataPath        a server path the control API may not read (outside its data root)
    ├── LocalOnly              a command that works on the stores themselves, in remote mode
    └── ApiError               the control API said no (remote mode: MLCP_API_URL)
        ├── ApiRefused         ... because another change won (409 conflict, exit 1)
        ├── ApiDenied          ... to this token: missing, unknown, or its role may not (exit 5)
        ├── ApiUnavailable     ... or could not be reached, after retries (exit 4: retry later)
        └── ApiFailed          ... with a server error (exit 3)

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


class InvalidPolicy(ControlPlaneError):
    """A policy that does not validate; names the key to fix."""

    def __init__(self, source: str, key: str, why: str) -> None:
        self.source = source
        self.key = key
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(f"{where}{why}")


class NoPolicy(ControlPlaneError):
    """The model has no promotion policy."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        super().__init__(
            f"model {model_name!r} has no promotion policy; "
            f"set one with `mlcp policy set {model_name} --file policy.yaml`"
        )


class InvalidTransition(ControlPlaneError):
    """The version's state does not allow what was asked."""

    def __init__(self, ref: str, state: str, wanted: str) -> None:
        self.ref = ref
        self.state = state
        super().__init__(f"{ref} is {state}; it cannot be {wanted}")


class NoFallback(InvalidTransition):
    """A rollback was asked for, but no version that passed its gates is there to take over."""

    def __init__(self, name: str, champion: int | None) -> None:
        self.name = name
        ControlPlaneError.__init__(
            self,
            f"model {name!r} has no version to roll back to (no former champion that was not "
            f"itself rolled back); name one with --to V, or promote a version through its gates"
            + (f" to replace {name}@{champion}" if champion is not None else ""),
        )
        self.ref, self.state = name, "without a fallback"


class ConcurrentChange(ControlPlaneError):
    """Another transition of the same model won the race (exit 1)."""

    def __init__(self, name: str, expected: str, found: str) -> None:
        self.name = name
        super().__init__(
            f"model {name!r} changed while this ran (expected {expected}, found {found}); "
            "nothing was moved: run it again to act on the new state"
        )


class InvalidUpload(ControlPlaneError):
    """An uploaded file whose content does not match its name, or that is not stored."""

    def __init__(self, upload: str, why: str) -> None:
        self.upload = upload
        super().__init__(f"upload {upload!r}: {why}")


class InvalidDataPath(ControlPlaneError):
    """A data path the control API may not read: only files under MLCP_API_DATA_ROOT."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"data_path {path!r}: {why}")


class LocalOnly(ControlPlaneError):
    """A command that reads or writes the stores themselves, asked for in remote mode."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(
            f"`{command}` works on the control plane's own stores, not through the API; run it "
            "where they are (unset MLCP_API_URL and MLCP_TOKEN there)"
        )


class ApiError(ControlPlaneError):
    """The control API answered with an error (remote mode). ``status`` is its HTTP status."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        self.status = status
        self.kind = kind
        super().__init__(message)


class ApiRefused(ApiError):
    """The API refused because another change won (409 conflict): exit 1, as locally."""


class ApiDenied(ApiError):
    """The token is missing, unknown or revoked (401), or its role may not do this (403)."""


class ApiUnavailable(ApiError):
    """The API could not be reached or said 503, after the retries safe for the call."""

    def __init__(self, url: str, why: str, attempts: int) -> None:
        self.url = url
        self.attempts = attempts
        tries = f" after {attempts} tries" if attempts > 1 else ""
        super().__init__(
            503,
            "Unavailable",
            f"the control API at {url} is unavailable{tries} ({why}); retry later",
        )


class ApiFailed(ApiError):
    """The API answered with a server error (5xx other than 503): a bug on the server."""
