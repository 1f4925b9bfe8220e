"""Errors raised by the registry.

    RegistryError
    ├── InvalidModelRef          a NAME@VERSION / NAME@ALIAS reference that does not parse
    ├── ModelNotFound            no registered model of that name
    ├── VersionNotFound          the model exists, the version or alias does not
    ├── InvalidModel             the object or file given is not a usable torch model
    │   └── UnsafeModel          a model file whose loading would run code (a pickle inside)
    ├── InvalidRegistration      a registration request with bad fields
    ├── IdempotencyConflict      the key was used before with different content
    ├── RegistrationInProgress   another registration holds the same idempotency key
    ├── RegistrationFailed       a step failed; everything done before it was undone
    ├── RegistryUnavailable      the MLflow tracking/registry store cannot be reached
    ├── ArtifactTampered         a stored model's files no longer hash to the registered sha256
    └── InvalidEvaluationData    labelled data a version cannot be evaluated on

Third-party exceptions (MLflow's) are translated at the adapter edge,
``registry/mlflow_backend.py``; nothing above it sees an ``MlflowException``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.lineage import Intent


class RegistryError(Exception):
    """Root of every error the registry raises."""


class InvalidModelRef(RegistryError):
    """A model reference that is not NAME@VERSION or NAME@ALIAS."""

    def __init__(self, ref: str, why: str) -> None:
        self.ref = ref
        super().__init__(
            f"invalid model reference {ref!r}: {why}; "
            "write NAME@VERSION (churn@3) or NAME@ALIAS (churn@champion)"
        )


class ModelNotFound(RegistryError):
    """No registered model of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"model {name!r} is not registered; run `mlcp models list` to see registered models"
        )


class VersionNotFound(RegistryError):
    """The model exists but the version or alias does not."""

    def __init__(self, name: str, version: int | str) -> None:
        self.name = name
        self.version = version
        kind = "alias" if isinstance(version, str) else "version"
        super().__init__(
            f"model {name!r} has no {kind} {version!r}; "
            f"run `mlcp models list --name {name}` to see its versions"
        )


class InvalidModel(RegistryError):
    """The object or file given is not a torch model the registry can log."""

    def __init__(self, source: str, why: str) -> None:
        self.source = source
        super().__init__(f"{source} is not a usable torch model: {why}")


class UnsafeModel(InvalidModel):
    """A model file whose loading would run code: refused before torch reads it."""

    def __init__(self, source: str, why: str) -> None:
        self.why = why
        super().__init__(source, f"refused, it is not plain data: {why}")


class InvalidRegistration(RegistryError):
    """A registration request with a bad field."""

    def __init__(self, field: str, why: str) -> None:
        self.field = field
        super().__init__(f"{field}: {why}")


class IdempotencyConflict(RegistryError):
    """The idempotency key was already used for a registration with different content."""

    def __init__(self, name: str, key: str, existing_version: int | None) -> None:
        self.name = name
        self.key = key
        self.existing_version = existing_version
        super().__init__(
            f"idempotency key {key!r} already registered {name}@{existing_version} with "
            "different content (model weights, params, metrics or lineage); "
            "use a new key for a new version, or resend exactly the same request"
        )


class RegistrationInProgress(RegistryError):
    """Another registration with the same idempotency key has not finished yet."""

    def __init__(self, name: str, key: str, intent: Intent | None = None) -> None:
        self.name = name
        self.key = key
        self.intent = intent
        owner = intent.owner if intent is not None else None
        by = f" by process {owner.pid} on {owner.host}" if owner is not None else ""
        super().__init__(
            f"a registration of {name!r} with idempotency key {key!r} is still in progress{by}; "
            "retry once it has finished, or run `mlcp models recover --older-than 0` if that "
            "process is gone"
        )


class RegistrationFailed(RegistryError):
    """A registration step failed; the steps before it were undone."""

    def __init__(self, name: str, step: str, cause: BaseException, leftovers: list[str]) -> None:
        self.name = name
        self.step = step
        self.cause = cause
        self.leftovers = leftovers
        tail = (
            "; nothing was kept"
            if not leftovers
            else f"; could not undo: {', '.join(leftovers)} (remove by hand)"
        )
        super().__init__(f"registering {name!r} failed at step {step!r}: {cause}{tail}")


class RegistryUnavailable(RegistryError):
    """The MLflow tracking or registry store cannot be reached."""

    def __init__(self, uri: str, why: str) -> None:
        self.uri = uri
        super().__init__(
            f"cannot reach the MLflow store at {uri}: {why}; "
            "check MLCP_MLFLOW_TRACKING_URI and that the server is running"
        )


class ArtifactTampered(RegistryError):
    """A stored model's files no longer hash to the sha256 recorded at registration."""

    def __init__(self, ref: str, expected: str, got: str) -> None:
        self.ref = ref
        self.expected = expected
        self.got = got
        super().__init__(
            f"{ref}: its stored artifact hashes to sha256 {got[:12]}..., not the "
            f"{expected[:12]}... recorded at registration (it was changed after the gates "
            "passed); refusing to load it: register the model again as a new version"
        )


class InvalidEvaluationData(RegistryError):
    """Labelled data a model version cannot be evaluated on."""

    def __init__(self, why: str, column: str | None = None) -> None:
        self.why = why
        self.column = column
        super().__init__(f"cannot evaluate on this data: {why}")


def first_line(exc: object) -> str:
    """An exception's first line of text (its type name when it has none): third-party
    messages run to pages, and ours quote them in one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
