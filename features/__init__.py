"""Features: versioned definitions on Feast, data checks before anything goes online,
point-in-time training sets with fingerprints and reference statistics, and a cached
online client.

    defs = load_definitions(Path("features.py"))
    with FeastRepo(Path(".mlcp/feast"), "mlcp", "registry.db", "online.db") as repo:
        repo.apply(defs)
        repo.materialize(VersionedRef.parse("user_stats@2"), start, end)
        ts = training_set(repo, VersionedRef.parse("churn_features@1"), entity_df)

Importing this package loads neither Feast nor Great Expectations: they load on first use.
"""

from features.client import (
    BackendUnavailable,
    CacheConfig,
    FeatureBatch,
    FeatureClient,
    FeatureRow,
    OnlineBackend,
)
from features.definitions import (
    Definitions,
    EntityDef,
    FeatureServiceDef,
    FeatureViewDef,
    Field,
    load_definitions,
)
from features.errors import (
    DataQualityFailed,
    DefinitionConflict,
    FeatureNotFound,
    FeatureStoreError,
    InvalidDataset,
    InvalidDefinition,
    InvalidFeatureRef,
    OnlineStoreUnavailable,
)
from features.feast_repo import (
    ApplyReport,
    FeastRepo,
    MaterializationResult,
    ServiceInfo,
    ViewInfo,
)
from features.fingerprint import (
    DatasetFingerprint,
    fingerprint_file,
    fingerprint_frame,
    read_dataset,
)
from features.generations import GenerationSource, MemoryGenerations, RedisGenerations
from features.metrics import FeatureMetrics
from features.online_feast import FeastOnlineBackend
from features.quality import QualityReport, schema_expectations, validate_frame
from features.reference import reference_statistics
from features.refs import VersionedRef
from features.training import TrainingSet, training_set

__all__ = [
    "ApplyReport",
    "BackendUnavailable",
    "CacheConfig",
    "DataQualityFailed",
    "DatasetFingerprint",
    "DefinitionConflict",
    "Definitions",
    "EntityDef",
    "FeastOnlineBackend",
    "FeastRepo",
    "FeatureBatch",
    "FeatureClient",
    "FeatureMetrics",
    "FeatureNotFound",
    "FeatureRow",
    "FeatureServiceDef",
    "FeatureStoreError",
    "FeatureViewDef",
    "Field",
    "GenerationSource",
    "InvalidDataset",
    "InvalidDefinition",
    "InvalidFeatureRef",
    "MaterializationResult",
    "MemoryGenerations",
    "OnlineBackend",
    "OnlineStoreUnavailable",
    "QualityReport",
    "RedisGenerations",
    "ServiceInfo",
    "TrainingSet",
    "VersionedRef",
    "ViewInfo",
    "fingerprint_file",
    "fingerprint_frame",
    "load_definitions",
    "read_dataset",
    "reference_statistics",
    "schema_expectations",
    "training_set",
    "validate_frame",
]
