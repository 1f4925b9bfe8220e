"""Features: Feast adapter, versioned definitions, data checks, training sets, cached reads.

So far: dataset fingerprints for lineage and reference statistics for drift.

    fp = fingerprint_file(Path("train.parquet"))   # DatasetFingerprint(sha256, rows, columns)
"""

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
from features.fingerprint import (
    DatasetFingerprint,
    fingerprint_file,
    fingerprint_frame,
    read_dataset,
)
from features.reference import reference_statistics
from features.refs import VersionedRef

__all__ = [
    "DataQualityFailed",
    "DatasetFingerprint",
    "DefinitionConflict",
    "FeatureNotFound",
    "FeatureStoreError",
    "InvalidDataset",
    "InvalidDefinition",
    "InvalidFeatureRef",
    "OnlineStoreUnavailable",
    "VersionedRef",
    "fingerprint_file",
    "fingerprint_frame",
    "read_dataset",
    "reference_statistics",
]
