"""Online features for the serving tier: `serving.spec.FeatureLookup` on the cached client.

    lookup = feature_lookup(cp)                      # or FeatureClientLookup(client, join_keys)
    rows = lookup.lookup("churn_features@1", [{"user_id": 7}])   # [{"tenure": 19, ...}] or [None]

The feature layer's errors become serving's here: a store that can't answer is
`FeaturesUnavailable` (503), entity keys that don't fit the service are `InvalidInput` (400).
Rows are read with ``partial=True``: an entity the store can't give (and nothing cached) is a
`FeaturesUnavailable` in its place, a row served past its TTL a `StaleFeatures`, so only the
requests that hold such an entity fail and the others are answered (and told when stale).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from features.client import BackendUnavailable
from features.errors import (
    FeatureNotFound,
    FeatureStoreError,
    InvalidFeatureRef,
    OnlineStoreUnavailable,
)
from serving.errors import FeaturesUnavailable, InvalidInput
from serving.spec import LookupRow, StaleFeatures

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from controlplane.context import ControlPlane
    from features.client import CacheConfig, FeatureClient, FeatureRow

JoinKeys = Callable[[str], tuple[str, ...]]


class FeatureClientLookup:
    """Reads a pinned feature service version through a `features.client.FeatureClient`.

    ``FeatureClientLookup(client, join_keys=None).lookup("churn_features@1", [{"user_id": 7}])``.
    ``join_keys(service)`` names the keys each entity row must carry; with it, a row that
    lacks one is refused before the store is asked, with a message naming the key.
    """

    def __init__(self, client: FeatureClient, join_keys: JoinKeys | None = None) -> None:
        self.client = client
        self._join_keys = join_keys
        self._keys: dict[str, tuple[str, ...]] = {}  # versions are immutable: ask once
        self._lock = threading.Lock()

    def lookup(self, service: str, entities: list[dict[str, Any]]) -> list[LookupRow]:
        try:
            keys = self._keys_of(service)
            if keys:
                _check_rows(service, keys, entities)
            batch = self.client.get(service, entities, partial=True)
        except (FeatureNotFound, InvalidFeatureRef) as exc:
            raise InvalidInput(str(exc)) from exc
        except (OnlineStoreUnavailable, BackendUnavailable) as exc:
            raise FeaturesUnavailable(str(exc)) from exc
        except FeatureStoreError as exc:  # e.g. the Feast registry can't be read
            raise FeaturesUnavailable(f"feature lookup of {service} failed: {exc}") from exc
        except (KeyError, ValueError, TypeError) as exc:
            # Feast's own words for entity rows that don't fit (a missing join key is a
            # KeyError, a key of the wrong type a ValueError); the online backend lets them out.
            known = self._keys.get(service)
            expected = f" (join keys: {', '.join(known)})" if known else ""
            why = str(exc).strip("\"'")  # a KeyError's text comes quoted
            raise InvalidInput(
                f"entity keys don't fit feature service {service}{expected}: "
                f"{type(exc).__name__}: {why}"
            ) from exc
        return [_served(service, row) for row in batch.rows]

    def warm(self, service: str) -> None:
        """Read the service's definition now, so the first request doesn't pay for it."""
        try:
            self._keys_of(service)
        except (FeatureNotFound, InvalidFeatureRef) as exc:
            raise FeaturesUnavailable(f"{exc}; the model pins a service this store lacks") from exc
        except FeatureStoreError as exc:
            raise FeaturesUnavailable(f"feature service {service} can't be read: {exc}") from exc

    def generation(self, service: str) -> tuple[int, ...] | None:
        """The generations of ``service``'s views as the cached client serves them."""
        return self.client.generation(service)

    def _keys_of(self, service: str) -> tuple[str, ...]:
        if self._join_keys is None:
            return ()
        keys = self._keys.get(service)
        if keys is None:
            keys = tuple(self._join_keys(service))
            with self._lock:
                self._keys[service] = keys
        return keys


def _served(service: str, row: FeatureRow) -> LookupRow:
    status = row.status
    if status == "hit" or status == "fetched" or status == "missing":
        return row.values
    if status == "stale" and row.values is not None:
        return StaleFeatures(row.values, row.age_s)
    if status == "stale":
        return None  # known unknown, stale: still unknown
    return FeaturesUnavailable(
        f"the online store of {service} is unavailable and these entities' features are not "
        "cached; retry later (entities seen recently are still answered)"
    )


def feature_lookup(
    cp: ControlPlane,
    config: CacheConfig | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FeatureClientLookup:
    """The control plane's cached feature client for a serving replica: join keys from its
    Feast registry, generations checked in the background (never on a batch's path), and its
    metrics on ``metrics_registry`` (the replica's /metrics) when given."""
    from dataclasses import replace

    from features.client import CacheConfig
    from features.metrics import FeatureMetrics
    from features.refs import VersionedRef

    repo = cp.features.repo

    def join_keys(service: str) -> tuple[str, ...]:
        return repo.service(VersionedRef.parse(service)).join_keys

    config = replace(config or CacheConfig(), check_in_background=True)
    metrics = FeatureMetrics(metrics_registry) if metrics_registry is not None else None
    return FeatureClientLookup(cp.features.client(config, metrics=metrics), join_keys)


def _check_rows(service: str, keys: tuple[str, ...], entities: list[dict[str, Any]]) -> None:
    example = ", ".join(f'"{k}": ...' for k in keys)
    for i, row in enumerate(entities):
        if not isinstance(row, dict):
            raise InvalidInput(
                f"entity {i} is a {type(row).__name__}; send an object such as {{{example}}}"
            )
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            raise InvalidInput(
                f"entity {i} lacks join key {', '.join(repr(k) for k in missing)} of feature "
                f"service {service}; send {{{example}}}"
            )
