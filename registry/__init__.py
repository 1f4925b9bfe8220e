"""The model registry: MLflow underneath, lineage in a store the control plane provides.

    from registry import Registrar, RegistrationRequest
    version = registrar.register(RegistrationRequest(name="churn", model=net, input_example=x))

``registry.mlflow_backend`` (the MLflow adapter) is imported lazily by whoever builds it.
"""

from registry.errors import (
    ArtifactTampered,
    IdempotencyConflict,
    InvalidEvaluationData,
    InvalidModel,
    InvalidModelRef,
    InvalidRegistration,
    ModelNotFound,
    RegistrationFailed,
    RegistrationInProgress,
    RegistryError,
    RegistryUnavailable,
    UnsafeModel,
    VersionNotFound,
)
from registry.lineage import Intent, LineageStore, ModelVersion, PendingRegistration, TrainingData
from registry.process import ProcessIdentity
from registry.refs import ModelRef, validate_model_name
from registry.registration import (
    MODEL_FORMATS,
    Registrar,
    RegistrationRequest,
    RegistrationRules,
)

__all__ = [
    "MODEL_FORMATS",
    "ArtifactTampered",
    "IdempotencyConflict",
    "Intent",
    "InvalidEvaluationData",
    "InvalidModel",
    "InvalidModelRef",
    "InvalidRegistration",
    "LineageStore",
    "ModelNotFound",
    "ModelRef",
    "ModelVersion",
    "PendingRegistration",
    "ProcessIdentity",
    "Registrar",
    "RegistrationFailed",
    "RegistrationInProgress",
    "RegistrationRequest",
    "RegistrationRules",
    "RegistryError",
    "RegistryUnavailable",
    "TrainingData",
    "UnsafeModel",
    "VersionNotFound",
    "validate_model_name",
]
