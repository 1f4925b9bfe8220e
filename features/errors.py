"""Errors raised by the feature layer.

FeatureStoreError
└── InvalidDataset     a dataset file that is missing, unreadable or of an unknown type
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Root of every error the feature layer raises."""


class InvalidDataset(FeatureStoreError):
    """A dataset file that can't be read."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"dataset {path}: {why}")
