"""`OnlineBackend` on a real Feast `FeatureStore` (SQLite, Redis, or any Feast online store).

    backend = FeastOnlineBackend(FeatureStore(config=repo_config))
    client = FeatureClient(backend, RedisGenerations(redis_url))
    client.get("churn_features@1", [{"user_id": 7}])

``churn_features@1`` reads the Feast feature service ``churn_features__v1``; values come back
keyed by plain feature name. Feast is imported only when a store is read (it costs seconds).
The store's connection errors become `BackendUnavailable` here; a service Feast doesn't know
becomes `FeatureNotFound`.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.client import BackendUnavailable
from features.errors import FeatureNotFound
from features.refs import VersionedRef

if TYPE_CHECKING:
    import feast

FRESHNESS_TAG = "mlcp.freshness_s"


@dataclass(frozen=True)
class _Service:
    feast_service: Any
    views: list[str]
    freshness_s: float | None
    names: dict[str, str]  # a column of Feast's response -> the plain feature name


class FeastOnlineBackend:
    """Reads feature services from a Feast store's online store, one call per batch."""

    def __init__(self, store: feast.FeatureStore) -> None:
        self.store = store
        self._services: dict[VersionedRef, _Service] = {}
        self._lock = threading.Lock()

    def read(
        self, service: VersionedRef, entity_rows: list[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        info = self._service(service)
        with unavailable(f"online store of {service}"):
            response = self.store.get_online_features(
                features=info.feast_service, entity_rows=entity_rows
            ).to_dict()
        columns = [
            (info.names[key], column) for key, column in response.items() if key in info.names
        ]
        results: list[dict[str, Any] | None] = []
        for i in range(len(entity_rows)):
            values = {name: column[i] for name, column in columns}
            # Feast answers an unknown entity with a row of nulls.
            known = any(value is not None for value in values.values())
            results.append(values if known else None)
        return results

    def views(self, service: VersionedRef) -> list[str]:
        return list(self._service(service).views)

    def freshness_s(self, service: VersionedRef) -> float | None:
        return self._service(service).freshness_s

    def feast_service(self, service: VersionedRef) -> Any:
        """The Feast ``FeatureService`` behind ``service`` (FeatureNotFound if none)."""
        return self._service(service).feast_service

    def _service(self, ref: VersionedRef) -> _Service:
        info = self._services.get(ref)
        if info is None:
            info = self._describe(ref)
            with self._lock:
                info = self._services.setdefault(ref, info)  # versions are immutable: keep it
        return info

    def _describe(self, ref: VersionedRef) -> _Service:
        from feast.errors import FeastObjectNotFoundException

        with unavailable(f"feature registry, reading {ref}"):
            try:
                feast_service = self.store.get_feature_service(ref.feast_name)
            except FeastObjectNotFoundException as exc:
                raise FeatureNotFound(str(ref)) from exc
            views: list[str] = []
            names: dict[str, str] = {}
            freshness: list[float] = []
            for projection in feast_service.feature_view_projections:
                views.append(projection.name)
                # full_feature_names=False (the default) gives "feature"; the full form is
                # "view__feature", and a versioned read "view@vN:feature": accept all three.
                prefix = projection.name_to_use()
                for feature in projection.features:
                    names[feature.name] = feature.name
                    names[f"{prefix}__{feature.name}"] = feature.name
                    names[f"{prefix}:{feature.name}"] = feature.name
                try:
                    view = self.store.get_feature_view(projection.name)
                except FeastObjectNotFoundException:
                    continue  # an on-demand view: computed on read, no freshness of its own
                seconds = view_freshness_s(view.tags, view.ttl)
                if seconds is not None:
                    freshness.append(seconds)
        return _Service(feast_service, views, min(freshness) if freshness else None, names)


def view_freshness_s(tags: dict[str, str], ttl: Any) -> float | None:
    """The ``mlcp.freshness_s`` tag, else the view's TTL (Feast's 0 means forever), else None."""
    if FRESHNESS_TAG in tags:
        return float(tags[FRESHNESS_TAG])
    if ttl is not None and ttl.total_seconds() > 0:
        return float(ttl.total_seconds())
    return None


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        sqlite3.OperationalError,
        OSError,
    )


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """The store's connection errors become `BackendUnavailable` at this edge."""
    try:
        yield
    except _connection_errors() as exc:
        raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
