"""Errors raised by the feature layer.

    FeatureStoreError
    ├── InvalidDataset          a dataset file that is missing, unreadable or of an unknown type
    ├── InvalidFeatureRef       a feature view/service reference that is not NAME@VERSION
    ├── InvalidDefinition       a feature definition that cannot be applied (names the field)
    ├── FeatureNotFound         a view or service version that is not registered
    ├── DefinitionConflict      a version re-applied with a different schema: bump the version
    ├── DataQualityFailed       materialization refused: critical expectations failed (report)
    └── OnlineStoreUnavailable  the online store is down and cached values are too stale

Feast's own exceptions are translated at the Feast adapter's edge; nothing above it
catches a Feast error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FeatureStoreError(Exception):
    """Root of every error the feature layer raises."""


class InvalidDataset(FeatureStoreError):
    """A dataset file that can't be read."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"dataset {path}: {why}")


class InvalidFeatureRef(FeatureStoreError):
    """A reference that is not NAME@VERSION."""

    def __init__(self, ref: str, why: str) -> None:
        self.ref = ref
        super().__init__(f"invalid feature reference {ref!r}: {why}")


class InvalidDefinition(FeatureStoreError):
    """A feature definition that cannot be applied."""

    def __init__(self, what: str, why: str) -> None:
        self.what = what
        super().__init__(f"{what}: {why}")


class FeatureNotFound(FeatureStoreError):
    """A view or service version that is not registered."""

    def __init__(self, ref: str, kind: str = "feature service") -> None:
        self.ref = ref
        super().__init__(
            f"{kind} {ref!r} is not registered; run `mlcp features list` to see the versions"
        )


class DefinitionConflict(FeatureStoreError):
    """A version that exists with a different schema."""

    def __init__(self, ref: str, differences: list[str]) -> None:
        self.ref = ref
        self.differences = differences
        super().__init__(
            f"{ref} is already registered with a different schema ({'; '.join(differences)}); "
            "versions are immutable: give the changed definition a new version"
        )


class DataQualityFailed(FeatureStoreError):
    """Critical expectations failed: the batch was refused and nothing went online."""

    def __init__(self, ref: str, report: Mapping[str, Any]) -> None:
        self.ref = ref
        self.report = report
        failures = report.get("failures", [])
        summary = (
            "; ".join(f"{f.get('expectation')}({f.get('column')})" for f in failures[:5])
            or "see the report"
        )
        super().__init__(
            f"materializing {ref} refused: {len(failures)} critical expectation(s) failed: "
            f"{summary}; nothing already online was changed"
        )


class OnlineStoreUnavailable(FeatureStoreError):
    """The online store can't be read and no cached value is fresh enough."""

    def __init__(self, service: str, why: str, max_staleness_s: float) -> None:
        self.service = service
        super().__init__(
            f"online store unavailable for {service} ({why}) and no cached value is younger "
            f"than {max_staleness_s:g} s; check the online store (MLCP_FEAST_ONLINE_STORE)"
        )
