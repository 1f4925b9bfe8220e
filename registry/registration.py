"""Registering a torch model: MLflow run, logged model, registry version and lineage, or nothing.

Registration is a saga. An intent row is written first, naming the process that runs it
(so even a killed process leaves a trace, and anyone on its host can tell it is gone), then
each MLflow step records how to undo itself; if any later step fails, the undo steps run in
reverse and the intent row is dropped. Lineage becomes visible only in the final step,
atomically with its audit row. An intent whose process is gone is undone (MLflow objects and
their artifacts) by `Registrar.recover`, and at once by a retry with the same idempotency key,
which then proceeds.

    registrar = Registrar(store, backend_factory)
    version = registrar.register(RegistrationRequest(name="churn", model=net, input_example=x))
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from registry.errors import (
    InvalidModel,
    InvalidRegistration,
    ModelNotFound,
    RegistrationFailed,
    RegistrationInProgress,
    VersionNotFound,
)
from registry.hashing import mapping_sha256, state_dict_sha256
from registry.lineage import Intent, LineageStore, ModelVersion, PendingRegistration, TrainingData
from registry.process import ProcessIdentity
from registry.refs import ModelRef, validate_model_name

if TYPE_CHECKING:
    import torch

    from registry.mlflow_backend import MlflowBackend

Progress = Callable[[str], None]
MODEL_FORMATS = ("pt2", "pickle")
_FEATURE_SERVICE = re.compile(r"^[A-Za-z0-9_.\-]+@[1-9][0-9]*$")
_PARAM_KEY = re.compile(r"^[A-Za-z0-9_\-. /]{1,250}$")


def _no_progress(_: str) -> None:
    pass


@dataclass(frozen=True)
class RegistrationRequest:
    """Everything a version is registered with. ``input_example`` is a batch of >= 2 rows."""

    name: str
    model: torch.nn.Module
    input_example: np.ndarray
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    feature_service: str | None = None
    training_data: TrainingData | None = None
    code_version: str | None = None
    registered_by: str = "unknown"
    idempotency_key: str | None = None
    description: str | None = None
    model_format: str = "pt2"
    reference_stats: Mapping[str, Any] | None = None  # per-feature training statistics
    # The model's input columns in order, when no feature service names them.
    input_names: tuple[str, ...] = ()
    # The training rows (a pandas DataFrame), when the caller has them: the control plane's
    # rules derive the fingerprint, the reference statistics and the prediction reference.
    training_frame: Any = None
    training_source: str | None = None  # where those rows came from (a path), for lineage
    label: str | None = None  # the training frame's label column (never an input)
    # The version's outputs on its training or evaluation rows, for prediction drift.
    prediction_reference: Mapping[str, Any] | None = None
    # The torch.export archive ``model`` was loaded from (checked by `registry.pt2`): stored
    # as it is in pt2 format instead of exporting ``model`` again. Not part of the fingerprint.
    archive: bytes | None = field(default=None, repr=False)

    def validate(self) -> None:
        import torch  # lazily: reads of the registry never pay torch's import

        validate_model_name(self.name)
        if not isinstance(self.model, torch.nn.Module):
            raise InvalidModel(repr(type(self.model).__name__), "it is not a torch.nn.Module")
        x = self.input_example
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiub" or x.ndim < 2:
            raise InvalidRegistration(
                "input_example", "give a numeric numpy array of shape (batch, features...)"
            )
        if x.shape[0] < 2:
            raise InvalidRegistration(
                "input_example",
                "give at least 2 rows, so torch.export keeps the batch dimension dynamic",
            )
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise InvalidRegistration("input_example", "contains NaN or infinity")
        for key, value in self.metrics.items():
            if not _PARAM_KEY.match(key):
                raise InvalidRegistration(f"metric {key!r}", "use letters, digits, '_-./ '")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRegistration(f"metric {key!r}", f"{value!r} is not a number")
            if not math.isfinite(value):
                raise InvalidRegistration(f"metric {key!r}", "is NaN or infinite")
        for key in self.params:
            if not _PARAM_KEY.match(key):
                raise InvalidRegistration(f"param {key!r}", "use letters, digits, '_-./ '")
        if self.feature_service is not None and not _FEATURE_SERVICE.match(self.feature_service):
            raise InvalidRegistration(
                "feature_service", f"{self.feature_service!r} is not NAME@VERSION (user_stats@2)"
            )
        if self.training_data is not None and self.training_data.rows < 0:
            raise InvalidRegistration("training_data.rows", "must be >= 0")
        if self.model_format not in MODEL_FORMATS:
            raise InvalidRegistration("model_format", f"use one of {', '.join(MODEL_FORMATS)}")
        if self.idempotency_key is not None and not 1 <= len(self.idempotency_key) <= 200:
            raise InvalidRegistration("idempotency_key", "must be 1-200 characters")
        if self.input_names and len(set(self.input_names)) != len(self.input_names):
            raise InvalidRegistration("input_names", "name each input column once")

    def fingerprint(self) -> str:
        """Digest of the content: equal requests (a CI retry) give equal fingerprints."""
        td = self.training_data
        return mapping_sha256(
            {
                "name": self.name,
                "weights": state_dict_sha256(self.model),
                "model_class": type(self.model).__qualname__,
                "example": [list(self.input_example.shape), str(self.input_example.dtype)],
                "params": {k: str(v) for k, v in self.params.items()},
                "metrics": {k: float(v) for k, v in self.metrics.items()},
                "feature_service": self.feature_service,
                "training_data": None if td is None else [td.fingerprint, td.rows],
                "code_version": self.code_version,
                "model_format": self.model_format,
                "description": self.description,
            }
        )


class RegistrationRules(Protocol):
    """What the control plane demands of every new version before it is registered (the
    pinned feature service exists, the reference covers exactly the model's inputs): one
    implementation, applied whichever door the request came in by (CLI, REST API, Python)."""

    def prepare(self, request: RegistrationRequest, progress: Progress) -> RegistrationRequest:
        """The request as it will be registered, or `InvalidRegistration` saying what to
        change."""
        ...


@dataclass
class _Undo:
    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, action: Callable[[], None]) -> None:
        self.steps.append((what, action))

    def run(self) -> list[str]:
        """Undo in reverse; return what could not be undone."""
        left: list[str] = []
        for what, action in reversed(self.steps):
            try:
                action()
            except Exception:
                left.append(what)
        return left


class Registrar:
    """Registers, finds and lists model versions.

    The MLflow backend is built on first use, so reads served by the lineage store alone
    (``get`` by number, ``versions``) never import mlflow.
    """

    def __init__(
        self,
        store: LineageStore,
        backend_factory: Callable[[], MlflowBackend],
        pip_requirements: list[str] | None = None,
        rules: RegistrationRules | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self._backend_factory = backend_factory
        self._backend: MlflowBackend | None = None
        self._pip_requirements = pip_requirements

    @property
    def pip_requirements(self) -> list[str]:
        """What the logged model needs at load time; torch pinned to the version in use."""
        if self._pip_requirements is None:
            import torch

            self._pip_requirements = [f"torch=={_public(torch.__version__)}"]
        return self._pip_requirements

    @property
    def backend(self) -> MlflowBackend:
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    # -- reads ----------------------------------------------------------------------------------
    def get(self, ref: ModelRef | str) -> ModelVersion:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if not self.store.versions(ref.name):
            raise ModelNotFound(ref.name)
        if ref.alias is not None:
            version = self.backend.resolve_alias(ref.name, ref.alias)
        else:
            assert ref.version is not None  # ModelRef.parse sets exactly one of the two
            version = ref.version
        found = self.store.get(ref.name, version)
        if found is None:
            raise VersionNotFound(ref.name, version)
        return found

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every registered version, or one model's (ModelNotFound when it has none)."""
        if name is not None:
            validate_model_name(name)
            found = self.store.versions(name)
            if not found:
                raise ModelNotFound(name)
            return found
        return self.store.versions()

    # -- register -------------------------------------------------------------------------------
    def register(
        self, request: RegistrationRequest, progress: Progress = _no_progress
    ) -> ModelVersion:
        """Register ``request`` or leave nothing behind. Returns the (possibly existing) version."""
        request.validate()
        if self.rules is not None:
            request = self.rules.prepare(request, progress)
        elif request.training_frame is not None:
            request = replace(request, training_frame=None)  # only the rules read it
        fingerprint = request.fingerprint()
        registration_id = uuid.uuid4().hex
        intent = PendingRegistration(
            registration_id=registration_id,
            name=request.name,
            idempotency_key=request.idempotency_key,
            request_fingerprint=fingerprint,
            registered_by=request.registered_by,
            owner=ProcessIdentity.current(),
        )
        try:
            existing = self.store.begin(intent)
        except RegistrationInProgress as busy:
            held = busy.intent
            if held is None or held.owner is None or held.owner.alive() is not False:
                raise
            # The key's holder died mid-way: undo what it left, then take the key.
            progress(
                f"undoing registration {held.registration_id} left by process "
                f"{held.owner.pid} on {held.owner.host}, which is gone"
            )
            self._undo(held)
            existing = self.store.begin(intent)
        if existing is not None:
            progress(f"{existing.ref} already registered with this idempotency key; reusing it")
            return existing

        undo = _Undo()
        undo.push("the intent row", lambda: self.store.abandon(registration_id))
        step = "connect to MLflow"
        try:
            backend = self.backend
            # Pushed before the first MLflow call: the purge finds what this registration made
            # by its tag, so a step that fails after MLflow did its part is undone too.
            undo.push(
                f"MLflow objects tagged {registration_id}",
                lambda: backend.purge_registration(request.name, registration_id),
            )
            tags = _version_tags(request, registration_id)
            step = "start run"
            progress(f"registering {request.name}: starting MLflow run")
            run_id = backend.start_run(request.name, f"register-{request.name}", tags)
            step = "log params and metrics"
            backend.log_run_data(
                run_id, {k: str(v) for k, v in request.params.items()}, request.metrics
            )
            step = "log model"
            progress(f"registering {request.name}: logging the model ({request.model_format})")
            logged = backend.log_model(
                run_id,
                request.model,
                request.input_example,
                request.model_format,
                self.pip_requirements,
                archive=request.archive,
            )
            step = "verify stored model"
            progress(f"registering {request.name}: reloading the stored model to verify it")
            sha = backend.verify_model(logged.model_id, request.model, request.input_example)
            step = "create version"
            progress(f"registering {request.name}: creating the registry version")
            number = backend.create_version(
                request.name,
                logged.model_uri,
                run_id,
                {**tags, "mlcp.artifact_sha256": sha},
                request.description,
            )
            step = "end run"
            backend.end_run(run_id)
            step = "record lineage"
            version = ModelVersion(
                name=request.name,
                version=number,
                state="registered",
                run_id=run_id,
                model_uri=f"models:/{request.name}/{number}",
                source_uri=logged.model_uri,
                artifact_sha256=sha,
                model_format=logged.model_format,
                signature=logged.signature,
                registered_by=request.registered_by,
                registered_at=datetime.now(UTC),
                feature_service=request.feature_service,
                training_data=request.training_data,
                code_version=request.code_version,
                params={k: str(v) for k, v in request.params.items()},
                metrics={k: float(v) for k, v in request.metrics.items()},
                description=request.description,
                idempotency_key=request.idempotency_key,
                request_fingerprint=fingerprint,
                reference_stats=request.reference_stats,
                prediction_reference=request.prediction_reference,
            )
            self.store.complete(registration_id, version)
        except BaseException as exc:
            leftovers = undo.run()
            if isinstance(exc, InvalidModel | InvalidRegistration) or not isinstance(
                exc, Exception
            ):
                raise
            raise RegistrationFailed(request.name, step, exc, leftovers) from exc
        progress(f"registered {version.ref}")
        return version

    def recover(self, older_than: timedelta = timedelta(hours=1)) -> list[str]:
        """Undo registrations a killed process left pending: at once when their process is
        known to be gone (it ran on this host), else once pending longer than ``older_than``.

        Returns the registration ids cleaned up (MLflow objects, their artifacts, the intent).
        A registration still running is left alone until ``older_than``.
        """
        cutoff = datetime.now(UTC) - older_than
        done = []
        for intent in self.store.pending():
            gone = intent.owner is not None and intent.owner.alive() is False
            if not gone and _aware(intent.created_at) > cutoff:
                continue
            self._undo(intent)
            done.append(intent.registration_id)
        return done

    def _undo(self, intent: Intent) -> None:
        self.backend.purge_registration(intent.name, intent.registration_id)
        self.store.abandon(intent.registration_id)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _version_tags(request: RegistrationRequest, registration_id: str) -> dict[str, str]:
    """Lineage mirrored onto MLflow, so it is readable without mlcp."""
    tags = {
        "mlcp.registration_id": registration_id,
        "mlcp.registered_by": request.registered_by,
    }
    if request.code_version:
        tags["mlflow.source.git.commit"] = request.code_version
        tags["mlcp.code_version"] = request.code_version
    if request.feature_service:
        tags["mlcp.feature_service"] = request.feature_service
    if request.training_data is not None:
        tags["mlcp.dataset_fingerprint"] = request.training_data.fingerprint
        tags["mlcp.dataset_rows"] = str(request.training_data.rows)
    return tags


def _public(version: str) -> str:
    """``2.13.0+cpu`` -> ``2.13.0``: the requirement should not pin a CPU-only build."""
    return version.split("+", 1)[0]
