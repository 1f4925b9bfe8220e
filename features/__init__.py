"""Features: versioned definitions on Feast, data checks before anything goes online,
point-in-time training sets with fingerprints and reference statistics, and a cached
online client.

    defs = load_definitions(Path("features.py"))
    with FeastRepo(Path(".mlcp/feast"), "mlcp", "registry.db", "online.db") as repo:
        repo.apply(defs)
        repo.materialize(VersionedRef.parse("user_stats@2"), start, end)
        ts = training_set(repo, VersionedRef.parse("churn_features@1"), entity_df)

Importing this package loads nothing but itself: names resolve on first use (PEP 562), and
Feast and Great Expectations load only when a store is read or a check runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from features.online_direct import DirectOnlineBackend, online_backend
    from features.online_feast import FeastOnlineBackend
    from features.quality import QualityReport, schema_expectations, validate_frame
    from features.reference import bin_index, numeric_statistics, reference_statistics
    from features.refs import VersionedRef
    from features.training import TrainingSet, training_set

_WHERE = {
    "ApplyReport": "features.feast_repo",
    "BackendUnavailable": "features.client",
    "CacheConfig": "features.client",
    "DataQualityFailed": "features.errors",
    "DatasetFingerprint": "features.fingerprint",
    "DefinitionConflict": "features.errors",
    "Definitions": "features.definitions",
    "EntityDef": "features.definitions",
    "FeastOnlineBackend": "features.online_feast",
    "DirectOnlineBackend": "features.online_direct",
    "online_backend": "features.online_direct",
    "FeastRepo": "features.feast_repo",
    "FeatureBatch": "features.client",
    "FeatureClient": "features.client",
    "FeatureMetrics": "features.metrics",
    "FeatureNotFound": "features.errors",
    "FeatureRow": "features.client",
    "FeatureServiceDef": "features.definitions",
    "FeatureStoreError": "features.errors",
    "FeatureViewDef": "features.definitions",
    "Field": "features.definitions",
    "GenerationSource": "features.generations",
    "InvalidDataset": "features.errors",
    "InvalidDefinition": "features.errors",
    "InvalidFeatureRef": "features.errors",
    "MaterializationResult": "features.feast_repo",
    "MemoryGenerations": "features.generations",
    "OnlineBackend": "features.client",
    "OnlineStoreUnavailable": "features.errors",
    "QualityReport": "features.quality",
    "RedisGenerations": "features.generations",
    "ServiceInfo": "features.feast_repo",
    "TrainingSet": "features.training",
    "VersionedRef": "features.refs",
    "ViewInfo": "features.feast_repo",
    "fingerprint_file": "features.fingerprint",
    "fingerprint_frame": "features.fingerprint",
    "load_definitions": "features.definitions",
    "read_dataset": "features.fingerprint",
    "reference_statistics": "features.reference",
    "bin_index": "features.reference",
    "numeric_statistics": "features.reference",
    "schema_expectations": "features.quality",
    "training_set": "features.training",
    "validate_frame": "features.quality",
}

__all__ = [
    "ApplyReport",
    "BackendUnavailable",
    "CacheConfig",
    "DataQualityFailed",
    "DatasetFingerprint",
    "DefinitionConflict",
    "Definitions",
    "DirectOnlineBackend",
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
    "bin_index",
    "fingerprint_file",
    "fingerprint_frame",
    "load_definitions",
    "numeric_statistics",
    "online_backend",
    "read_dataset",
    "reference_statistics",
    "schema_expectations",
    "training_set",
    "validate_frame",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'features' has no attribute {name!r}")
