"""Online features for the serving tier: `serving.spec.FeatureLookup` on the cached client.

    lookup = feature_lookup(cp)                      # or FeatureClientLookup(client, join_keys)
    rows = lookup.lookup("churn_features@1", [{"user_id": 7}])   # [{"tenure": 19, ...}] or [None]

The feature layer's errors become serving's here: a store that can't answer is
`FeaturesUnavailable` (503), entity keys that don't fit the service are `InvalidInput` (400).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from features.client import BackendUnavailable
from features.errors import (
    FeatureNotFound,
    FeatureStoreError,
    InvalidFeatureRef,
    OnlineStoreUnavailable,
)
from serving.errors import FeaturesUnavailable, InvalidInput

if TYPE_CHECKING:
    from controlplane.context import ControlPlane
    from features.client import CacheConfig, FeatureClient

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

    def lookup(
        self, service: str, entities: list[dict[str, Any]]
    ) -> list[Mapping[str, Any] | None]:
        try:
            keys = self._keys_of(service)
            if keys:
                _check_rows(service, keys, entities)
            batch = self.client.get(service, entities)
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
        return [row.values for row in batch.rows]

    def warm(self, service: str) -> None:
        """Read the service's definition now, so the first request doesn't pay for it."""
        try:
            self._keys_of(service)
        except (FeatureNotFound, InvalidFeatureRef) as exc:
            raise FeaturesUnavailable(f"{exc}; the model pins a service this store lacks") from exc
        except FeatureStoreError as exc:
            raise FeaturesUnavailable(f"feature service {service} can't be read: {exc}") from exc

    def _keys_of(self, service: str) -> tuple[str, ...]:
        if self._join_keys is None:
            return ()
        keys = self._keys.get(service)
        if keys is None:
            keys = tuple(self._join_keys(service))
            with self._lock:
                self._keys[service] = keys
        return keys


def feature_lookup(cp: ControlPlane, config: CacheConfig | None = None) -> FeatureClientLookup:
    """The control plane's cached feature client, with join keys from its Feast registry."""
    from features.refs import VersionedRef

    repo = cp.features.repo

    def join_keys(service: str) -> tuple[str, ...]:
        return repo.service(VersionedRef.parse(service)).join_keys

    return FeatureClientLookup(cp.features.client(config), join_keys)


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
