"""The MLflow adapter: the only module of mlcp that talks to MLflow.

Every MLflow call the registry makes goes through ``MlflowBackend``, and every
``MlflowException`` (and database error from MLflow's store) is translated here
into a ``RegistryError``. Import this module lazily: importing mlflow costs ~2 s.

    backend = MlflowBackend("sqlite:///.mlcp/mlflow.db", artifact_root="file:///abs/artifacts")
    run_id = backend.start_run("churn", tags={"mlcp.registration_id": "..."})
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import sqlalchemy
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST
from mlflow.types import Schema, TensorSpec

from registry.errors import (
    ArtifactTampered,
    InvalidModel,
    ModelNotFound,
    RegistryError,
    RegistryUnavailable,
    UnsafeModel,
    VersionNotFound,
    first_line,
)
from registry.evaluation import EXPORT_DYNAMIC_BATCH, fixed_batch_size
from registry.hashing import directory_sha256

if TYPE_CHECKING:
    # Imported where a model is handled, not here: `mlcp promote` without a latency gate
    # and `mlcp approve` move aliases and never pay torch's import (~1.5 s).
    import torch

    from registry.lineage import ModelVersion

# MLflow's own files that registration adds next to the model after the fact; they are not
# the model, so they stay out of the artifact digest.
_NOT_MODEL_FILES = frozenset({"registered_model_meta"})
REGISTRATION_TAG = "mlcp.registration_id"  # on runs and versions: what to purge on failure
CREATED_BY_TAG = "mlcp.created_by_registration"  # on a registered model its first version made
# MLflow keeps the tracking/registry URIs and the active run in process-global state, and
# resolves models:/ URIs (a version's source among them) against those URIs whatever client
# asks. Calls that depend on them run under this lock with this backend's URIs in place,
# and leave them there: the process's globals point at the last backend used.
_GLOBALS_LOCK = threading.RLock()


@dataclass(frozen=True)
class LoggedModel:
    """A model logged to a run: what the version will point at."""

    model_uri: str  # models:/m-<id>
    model_id: str
    model_format: str
    signature: dict[str, Any]


@contextlib.contextmanager
def translate_errors(uri: str) -> Iterator[None]:
    """Map MLflow's exceptions and its store's database errors to RegistryError."""
    try:
        yield
    except RegistryError:
        raise
    except MlflowException as exc:
        if "could not connect" in str(exc).lower() or "connection refused" in str(exc).lower():
            raise RegistryUnavailable(uri, first_line(exc)) from exc
        raise RegistryError(f"MLflow refused the operation: {first_line(exc)}") from exc
    except sqlalchemy.exc.OperationalError as exc:
        raise RegistryUnavailable(uri, first_line(exc.orig or exc)) from exc
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise RegistryError(f"MLflow's store failed: {first_line(exc)}") from exc


def tensor_signature(model: torch.nn.Module, example: np.ndarray) -> ModelSignature:
    """A TensorSpec signature with a dynamic batch dimension, outputs from one forward pass.

    A torch.export program traced with a static batch size keeps it in the signature (MLflow
    then exports it as it is): the schema gate refuses it, saying how to export instead.
    """
    import torch

    fixed = fixed_batch_size(model)
    if fixed is not None and fixed != example.shape[0]:
        raise InvalidModel(
            type(model).__name__,
            f"it was exported with a fixed batch size of {fixed} and the input example has "
            f"{example.shape[0]} rows; serving batches requests: {EXPORT_DYNAMIC_BATCH}",
        )
    try:
        with torch.inference_mode():
            out = model(torch.from_numpy(example))
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise InvalidModel(
            type(model).__name__,
            f"forward() fails on the input example of shape {tuple(example.shape)} "
            f"({first_line(exc)}); give an example the model accepts",
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise InvalidModel(
            type(model).__name__, f"forward() returned {type(out).__name__}, expected one Tensor"
        )
    out_np = out.detach().cpu().numpy()
    # Unnamed on purpose: with a named tensor, MLflow's scoring server hands the model a dict
    # {"input": array}, which its torch flavor refuses, so `mlflow models serve` answered 400
    # to every request. Serving names the single input "input" itself.
    batch = -1 if fixed is None else fixed
    return ModelSignature(
        inputs=Schema([TensorSpec(example.dtype, (batch, *example.shape[1:]))]),
        outputs=Schema([TensorSpec(out_np.dtype, (-1, *out_np.shape[1:]))]),
    )


class MlflowBackend:
    """MLflow tracking and model registry, behind one translated surface."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None = None,
        artifact_root: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.artifact_root = artifact_root
        for uri in {self.tracking_uri, self.registry_uri}:
            _probe_database(uri, connect_timeout_s)
        with translate_errors(self.tracking_uri):
            self.client = MlflowClient(self.tracking_uri, self.registry_uri)
            # MLflow creates its schema lazily; touching the store here makes a fresh
            # SQLite file's migrations (a few seconds) happen once, visibly, at start-up.
            self.client.search_experiments(max_results=1)

    @contextlib.contextmanager
    def _globals(self) -> Iterator[None]:
        # Set, not restored: mlflow mirrors them into MLFLOW_*_URI environment variables, so
        # a "restore" would pin its resolved default (./mlflow.db) for every subprocess.
        with _GLOBALS_LOCK:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.registry_uri)
            yield

    # -- runs ---------------------------------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        with translate_errors(self.tracking_uri):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                return str(exp.experiment_id)
            location = f"{self.artifact_root.rstrip('/')}/{name}" if self.artifact_root else None
            try:
                return str(self.client.create_experiment(name, artifact_location=location))
            except MlflowException as exc:  # created by a concurrent registration
                if exc.error_code != _code(RESOURCE_ALREADY_EXISTS):
                    raise
                exp = self.client.get_experiment_by_name(name)
                assert exp is not None
                return str(exp.experiment_id)

    def start_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
        with translate_errors(self.tracking_uri):
            experiment_id = self.ensure_experiment(experiment)
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
            return str(run.info.run_id)

    def log_run_data(
        self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float]
    ) -> None:
        from mlflow.entities import Metric, Param

        with translate_errors(self.tracking_uri):
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), _now_ms(), 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in params.items()],
            )

    def log_model(
        self,
        run_id: str,
        model: torch.nn.Module,
        input_example: np.ndarray,
        model_format: str,
        pip_requirements: list[str],
        archive: bytes | None = None,
    ) -> LoggedModel:
        """``model`` logged to the run as MLflow's pytorch flavor. In pt2 format the stored
        program is ``archive`` (the torch.export archive ``model`` was loaded from, checked
        by the caller) or, without one, ``model`` exported here; pickle goes through MLflow."""
        signature = tensor_signature(model, input_example)
        with self._globals(), translate_errors(self.tracking_uri):
            if model_format == "pt2":
                from mlflow.models import Model

                from registry import mlflow_pt2

                if archive is None:
                    archive = _export(model, input_example)
                # The run active: MLflow files the logged model under the run's experiment.
                with mlflow.start_run(run_id=run_id):
                    info = Model.log(
                        artifact_path=None,
                        name="model",
                        flavor=mlflow_pt2,
                        flavor_name="mlflow.pytorch",  # what MLflow records of the logged model
                        archive=archive,
                        signature=signature,
                        input_example=input_example,
                        pip_requirements=pip_requirements,
                        serialization_format=model_format,
                        validate_serving_input=False,  # verify_model checks the round trip
                    )
            else:
                with mlflow.start_run(run_id=run_id):
                    info = mlflow.pytorch.log_model(
                        model,
                        name="model",
                        input_example=input_example,
                        signature=signature,
                        serialization_format=model_format,
                        pip_requirements=pip_requirements,
                        # MLflow's check feeds the example as JSON lists, which its torch
                        # flavor rejects; verify_model checks the real round trip instead.
                        validate_serving_input=False,
                    )
        return LoggedModel(
            model_uri=info.model_uri,
            model_id=str(info.model_id),
            model_format=model_format,
            signature=signature.to_dict(),
        )

    def fetch_model(self, model_id: str, dst: Path) -> Path:
        """The logged model's stored files, read back from the artifact store into ``dst``.

        Resolved through this backend's client: ``models:/`` URIs given to mlflow's fluent
        helpers would resolve against the process-global tracking URI instead.
        """
        with translate_errors(self.tracking_uri):
            location = self.client.get_logged_model(model_id).artifact_location
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=location,
                    dst_path=str(dst),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
            )

    def verify_model(self, model_id: str, model: torch.nn.Module, example: np.ndarray) -> str:
        """Read the stored model back, check it loads as MLflow's torch flavor loads it
        (`_load_stored`) and reproduces the original's outputs on ``example``, and return the
        digest of its files."""
        import tempfile

        import torch

        with tempfile.TemporaryDirectory(prefix="mlcp-verify-") as tmp:
            local = self.fetch_model(model_id, Path(tmp))
            digest = directory_sha256(local, exclude=_NOT_MODEL_FILES)
            _check_archives(local, model_id, pickled_ok=True)
            loaded = self._load_stored(local, model_id)
            with torch.inference_mode():
                expected = model(torch.from_numpy(example))
                got = loaded(torch.from_numpy(example))
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            diff = float((got - expected).abs().max())
            raise RegistryError(
                "the stored model does not reproduce the original's outputs "
                f"(max |diff| {diff:.3g})"
            )
        return digest

    def load_version(self, version: ModelVersion) -> torch.nn.Module:
        """The version's stored model, loaded only once its files hash to the sha256
        recorded at registration (`ArtifactTampered` if not) and, for pt2, once its archive
        reads as plain data (`registry.pt2`; `UnsafeModel` if not). The files are the
        logged model the lineage names, not whatever the MLflow version points at now."""
        import tempfile

        import torch

        ref = version.ref
        with tempfile.TemporaryDirectory(prefix="mlcp-load-") as tmp:
            local = self.fetch_model(logged_model_id(version.source_uri), Path(tmp))
            digest = directory_sha256(local, exclude=_NOT_MODEL_FILES)
            if digest != version.artifact_sha256:
                raise ArtifactTampered(ref, version.artifact_sha256 or "(none)", digest)
            if version.model_format == "pt2":
                _check_archives(local, ref)
            model = self._load_stored(local, ref)
        if not isinstance(model, torch.nn.Module):
            raise InvalidModel(ref, f"MLflow loaded a {type(model).__name__}")
        return model

    def _load_stored(self, local: Path, what: str) -> Any:
        """A stored model folder's module: its one pt2 archive loaded as a file's is
        (`registry.model_files.load_checked_pt2`: what ``mlflow.pytorch.load_model`` gives,
        without torch's deserializer for plain-ATen programs), anything else through MLflow
        itself. Archives are checked (`_check_archives`) before this is called."""
        from registry.model_files import load_checked_pt2

        archives = sorted(local.rglob("*.pt2"))
        if len(archives) == 1 and not any(local.rglob("*.pth")):
            return load_checked_pt2(archives[0], what)
        with self._globals(), translate_errors(self.registry_uri):
            return mlflow.pytorch.load_model(str(local))

    def log_evaluation(
        self,
        name: str,
        version: int,
        source_uri: str,
        metrics: Mapping[str, float],
        dataset_fingerprint: str,
        dataset_rows: int,
        dataset_source: str | None,
    ) -> str:
        """A finished run ``evaluate-NAME-VERSION`` in the model's experiment holding
        ``metrics``, each linked to the logged model and the dataset; returns the run id."""
        model_id = logged_model_id(source_uri)
        tags = {
            "mlcp.evaluation": "true",
            "mlcp.model_version": f"{name}@{version}",
            "mlcp.dataset_fingerprint": dataset_fingerprint,
            "mlcp.dataset_rows": str(dataset_rows),
        }
        if dataset_source:
            tags["mlcp.dataset_source"] = dataset_source
        with translate_errors(self.tracking_uri):
            run_id = self.start_run(name, f"evaluate-{name}-{version}", tags)
            try:
                timestamp = _now_ms()
                for key, value in metrics.items():
                    self.client.log_metric(
                        run_id,
                        key,
                        float(value),
                        timestamp=timestamp,
                        model_id=model_id,
                        # MLflow keeps at most 36 characters of a metric's dataset digest.
                        dataset_digest=dataset_fingerprint[:12],
                        dataset_name=_dataset_name(dataset_source, dataset_fingerprint),
                    )
            except BaseException:
                self.client.set_terminated(run_id, status="FAILED")
                raise
            self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        with translate_errors(self.tracking_uri):
            self.client.set_terminated(run_id, status=status)

    # -- registry -----------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        description: str | None = None,
    ) -> int:
        """Create a version (and the registered model, on the first one); returns its number."""
        with self._globals(), translate_errors(self.registry_uri):
            try:
                self.client.create_registered_model(
                    name, tags={CREATED_BY_TAG: str(tags.get(REGISTRATION_TAG, ""))}
                )
            except MlflowException as exc:
                if exc.error_code != _code(RESOURCE_ALREADY_EXISTS):
                    raise
            # An MLflow tracking server (unlike the SQL stores) insists on model_id= when the
            # source is a logged model (models:/m-...).
            mv = self.client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                tags=dict(tags),
                description=description,
                model_id=logged_model_id(source) if source.startswith("models:/m-") else None,
            )
            return int(mv.version)

    def resolve_alias(self, name: str, alias: str) -> int:
        with translate_errors(self.registry_uri):
            try:
                aliases = self.client.get_registered_model(name).aliases
            except MlflowException as exc:
                if exc.error_code != _code(RESOURCE_DOES_NOT_EXIST):
                    raise
                raise ModelNotFound(name) from None
        if alias not in aliases:
            raise VersionNotFound(name, alias)
        return int(aliases[alias])

    def aliases(self, name: str) -> dict[str, int]:
        with translate_errors(self.registry_uri):
            return {k: int(v) for k, v in self.client.get_registered_model(name).aliases.items()}

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        """Point ``alias`` at ``version``; None removes it."""
        with translate_errors(self.registry_uri):
            if version is not None:
                self.client.set_registered_model_alias(name, alias, str(version))
            elif alias in self.client.get_registered_model(name).aliases:
                self.client.delete_registered_model_alias(name, alias)

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        """Set tags on a registered version (mlcp mirrors its lifecycle state as ``mlcp.state``)."""
        with translate_errors(self.registry_uri):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, str(version), key, value)

    def model_exists(self, name: str) -> bool:
        with translate_errors(self.registry_uri):
            try:
                self.client.get_registered_model(name)
                return True
            except MlflowException as exc:
                if exc.error_code != _code(RESOURCE_DOES_NOT_EXIST):
                    raise
                return False

    def version_count(self, name: str) -> int:
        with translate_errors(self.registry_uri):
            return len(self.client.search_model_versions(f"name = '{name}'"))

    # -- undo ---------------------------------------------------------------------------------
    def purge_registration(self, name: str, registration_id: str) -> None:
        """Delete everything one registration created, found by its tag, artifacts included:
        idempotent, and correct even when a step failed after MLflow had done its part."""
        from mlflow.entities import ViewType

        tag = f"tags.`{REGISTRATION_TAG}` = '{registration_id}'"
        with translate_errors(self.registry_uri):
            if self.model_exists(name):
                for mv in self.client.search_model_versions(f"name = '{name}' and {tag}"):
                    self.client.delete_model_version(name, mv.version)
                registered = self.client.get_registered_model(name)
                if (
                    registered.tags.get(CREATED_BY_TAG) == registration_id
                    and self.version_count(name) == 0
                ):
                    self.client.delete_registered_model(name)
        with translate_errors(self.tracking_uri):
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                return
            runs = self.client.search_runs(
                [exp.experiment_id], filter_string=tag, run_view_type=ViewType.ALL
            )
            for run in runs:
                logged = self.client.search_logged_models(
                    experiment_ids=[exp.experiment_id],
                    filter_string=f"source_run_id = '{run.info.run_id}'",
                )
                for logged_model in logged:
                    # MLflow's deletes are soft: the files would stay behind, orphaned.
                    _delete_artifacts(logged_model.artifact_location)
                    self.client.delete_logged_model(logged_model.model_id)
                _delete_artifacts(run.info.artifact_uri)
                if run.info.lifecycle_stage != "deleted":
                    self.client.set_terminated(run.info.run_id, status="FAILED")
                    self.client.delete_run(run.info.run_id)


def _export(model: torch.nn.Module, example: np.ndarray) -> bytes:
    """``model`` as torch.export archive bytes (batch dimension dynamic unless the model
    fixes it); a model torch cannot trace is an InvalidModel saying what to change."""
    from registry.archive import export_archive

    return export_archive(
        model,
        example,
        advice="make forward() free of data-dependent Python control flow, or register with "
        "--format pickle (loading then needs MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true)",
    )


def _check_archives(local: Path, what: str, pickled_ok: bool = False) -> None:
    """Every pt2 archive of a stored model read as data (`registry.pt2`) before MLflow hands
    it to torch.export.load; a pt2 model without one is refused too."""
    from registry.pt2 import check_pt2

    if any(local.rglob("*.pth")):
        if pickled_ok:
            return  # MLflow's pickle format: unpickled only under MLflow's own opt-in
        raise UnsafeModel(what, "its stored pt2 model holds a pickle (.pth) that MLflow would load")
    archives = sorted(local.rglob("*.pt2"))
    if not archives:
        raise InvalidModel(what, "its stored pt2 model has no .pt2 archive")
    for archive in archives:
        check_pt2(archive, source=f"{what} ({archive.name})")


def _delete_artifacts(location: str | None) -> None:
    """Remove the files under an artifact location (a run's, a logged model's); on a local
    store also the folder named after it. Absent files are fine: purges repeat."""
    if not location:
        return
    if location.startswith("file:") or "://" not in location:
        from mlflow.utils.file_utils import local_file_uri_to_path

        path = Path(local_file_uri_to_path(location))
        owner = path.parent if path.name == "artifacts" else path  # .../<run id>/artifacts
        shutil.rmtree(owner, ignore_errors=True)
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with contextlib.suppress(FileNotFoundError):
        get_artifact_repository(location).delete_artifacts()


def _probe_database(uri: str, timeout_s: float) -> None:
    """Fail fast on an unreachable database; MLflow itself retries for minutes."""
    if uri.startswith("sqlite:///"):
        parent = Path(uri.removeprefix("sqlite:///")).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnavailable(uri, f"cannot create {parent}: {exc.strerror}") from exc
        if not os.access(parent, os.W_OK):
            raise RegistryUnavailable(uri, f"{parent} is not writable")
        return
    if uri.startswith(("postgresql", "mysql", "mssql")):
        engine = sqlalchemy.create_engine(
            uri, connect_args={"connect_timeout": max(1, int(timeout_s))}
        )
        try:
            with engine.connect():
                pass
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise RegistryUnavailable(
                _redact(uri), first_line(getattr(exc, "orig", None) or exc)
            ) from exc
        finally:
            engine.dispose()


def logged_model_id(source_uri: str) -> str:
    """``models:/m-<id>`` (a version's source) -> ``m-<id>``."""
    model_id = source_uri.removeprefix("models:/")
    if model_id == source_uri or not model_id.startswith("m-") or "/" in model_id:
        raise RegistryError(f"{source_uri!r} is not a logged model URI (models:/m-...)")
    return model_id


def _dataset_name(source: str | None, fingerprint: str) -> str:
    return Path(source).name if source else f"dataset-{fingerprint[:12]}"


def _redact(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return uri


def _code(error_code: int) -> str:
    from mlflow.protos.databricks_pb2 import ErrorCode

    return str(ErrorCode.Name(error_code))


def _now_ms() -> int:
    return int(time.time() * 1000)
