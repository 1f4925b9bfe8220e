"""The Feast adapter: versioned definitions in, validated materializations, online and
point-in-time reads out. Feast's exceptions stop here, translated to ``features.errors``.

Each mlcp version is its own Feast object named ``<name>__v<version>``, so old versions stay
readable. Views carry tags: ``mlcp.name``, ``mlcp.version``, ``mlcp.schema_sha256``,
``mlcp.freshness_s`` and ``mlcp.definition`` (the whole ``FeatureViewDef`` as JSON, its
expectations included): ``materialize`` needs only the ref, never the definitions file.

    repo = FeastRepo(Path("feature_repo"), "churn", "registry.db", "redis://127.0.0.1:6379")
    repo.apply(load_definitions(Path("features.py")))
    repo.materialize(VersionedRef.parse("user_stats@2"), start, end)
    repo.online(VersionedRef.parse("churn_features@2"), [{"user_id": 7}])
    # {"user_id": [7], "tenure": [12], ...}: join keys and plain feature names

Feast is imported on first use (it costs seconds).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from features.definitions import (
    Definitions,
    EntityDef,
    FeatureServiceDef,
    FeatureViewDef,
    Field,
)
from features.errors import (
    DataQualityFailed,
    DefinitionConflict,
    FeatureNotFound,
    FeatureStoreError,
    InvalidDataset,
    InvalidDefinition,
    OnlineStoreUnavailable,
)
from features.fingerprint import read_dataset
from features.quality import QualityReport, schema_expectations, validate_frame
from features.refs import VersionedRef

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

Progress = Callable[[str], None]

# Overridable in the URL: redis://host:6379/0?socket_timeout=0.5
REDIS_DEFAULTS = {"socket_connect_timeout": "2", "socket_timeout": "2"}

_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did, as ``"entity user"``, ``"view user_stats@2"``, ``"service churn@1"``.

    ``updated``: same schema, other settings changed (source, TTLs, expectations).
    """

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


@dataclass(frozen=True)
class ViewInfo:
    """A registered feature view version, read back from the Feast registry."""

    ref: VersionedRef
    entity: str
    join_key: str
    fields: tuple[Field, ...]
    freshness_s: int
    ttl_s: int
    source: str
    schema_sha256: str
    definition: FeatureViewDef
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceInfo:
    """A registered feature service version.

    ``features`` are qualified (``user_stats@2:tenure``); ``feature_names`` are the plain
    names ``online`` and training sets use; ``freshness_s`` is its views' smallest.
    """

    ref: VersionedRef
    features: tuple[str, ...]
    feature_names: tuple[str, ...]
    views: tuple[VersionedRef, ...]
    join_keys: tuple[str, ...]
    freshness_s: int
    schema_sha256: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MaterializationResult:
    """A materialization that went online. ``rows``: source rows in the window, all checked
    (Feast writes the latest per entity); ``report`` holds any warning-level failures."""

    ref: VersionedRef
    start: datetime
    end: datetime
    rows: int
    report: QualityReport


class FeastRepo:
    """One Feast project: a registry (file path or SQLAlchemy URL), a file offline store
    and an online store (SQLite path or ``redis://host:port[/db]``).

    Relative paths resolve against ``repo_path``, as do relative view sources that did not
    come through ``load_definitions``. Registry reads are cached ``registry_cache_ttl_s``:
    another process's ``apply`` shows here within that. Redis URLs take redis-py options
    as query parameters (``?socket_timeout=0.5``); the timeouts default to 2 s.
    Opening the store writes ``repo_path/feature_store.yaml`` with the same configuration
    (rewritten when the settings change), so Feast's own CLI and a plain
    ``feast.FeatureStore(repo_path=...)`` open the same project.
    """

    def __init__(
        self,
        repo_path: Path,
        project: str,
        registry: str,
        online_store: str,
        *,
        registry_cache_ttl_s: int = 60,
    ) -> None:
        if not _PROJECT.match(project):
            raise InvalidDefinition(
                f"Feast project {project!r}", "use letters, digits and underscores"
            )
        self.repo_path = Path(repo_path).resolve()
        self.project = project
        self.registry = registry
        self.online_store = online_store
        self.registry_cache_ttl_s = registry_cache_ttl_s

    def __repr__(self) -> str:
        return f"FeastRepo({str(self.repo_path)!r}, project={self.project!r})"

    @cached_property
    def store(self) -> FeatureStore:
        """The ``feast.FeatureStore``, built on first use."""
        from feast import FeatureStore, RepoConfig
        from feast.infra.registry.sql import SqlRegistryConfig
        from feast.repo_config import RegistryConfig

        registry: RegistryConfig
        plain = self.feature_store_yaml()
        if "://" in self.registry:
            registry = SqlRegistryConfig(
                **plain["registry"],
                sqlalchemy_config_kwargs={"echo": False, "pool_pre_ping": True},
            )
        else:
            registry = RegistryConfig(**plain["registry"])
        self.repo_path.mkdir(parents=True, exist_ok=True)
        config = RepoConfig(
            project=self.project,
            provider="local",
            registry=registry,
            online_store=plain["online_store"],
            offline_store=plain["offline_store"],
            entity_key_serialization_version=plain["entity_key_serialization_version"],
            repo_path=self.repo_path,
        )
        _keep_file(self.repo_path / "feature_store.yaml", plain)
        with _feast_errors(f"Feast project {self.project}"):
            store = FeatureStore(config=config)
        if config.online_store.type == "redis":
            _fail_fast(store)
        return store

    def feature_store_yaml(self) -> dict[str, Any]:
        """This project's Feast configuration, as ``feature_store.yaml`` holds it."""
        registry: dict[str, Any] = {"cache_ttl_seconds": self.registry_cache_ttl_s}
        if "://" in self.registry:
            # Feast warns about a bare postgresql:// (psycopg2); it runs on psycopg 3.
            url = re.sub(r"^postgresql://", "postgresql+psycopg://", self.registry)
            registry.update(registry_type="sql", path=url)
        else:
            registry["path"] = str(self.repo_path / self.registry)
        return {
            "project": self.project,
            "provider": "local",
            "registry": registry,
            "online_store": _online_config(self.online_store, self.repo_path),
            "offline_store": {"type": "file"},
            "entity_key_serialization_version": 3,
        }

    def close(self) -> None:
        """Close the registry's and online store's connections (a later call reopens)."""
        store = self.__dict__.pop("store", None)
        if store is None:
            return
        registry = store.registry
        for engine in {getattr(registry, n, None) for n in ("write_engine", "read_engine")}:
            if engine is not None:
                engine.dispose()
        online = getattr(store._get_provider(), "online_store", None)
        for name in ("_client", "_conn"):
            connection = getattr(online, name, None)
            if connection is not None:
                connection.close()
                setattr(online, name, None)

    def __enter__(self) -> FeastRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- definitions ----------------------------------------------------------------------------
    def apply(self, defs: Definitions) -> ApplyReport:
        """Register new versions; DefinitionConflict (and nothing applied) if a registered
        version's schema differs. Never deletes: old versions stay readable."""
        defs.validate()
        defs = Definitions(
            entities=list(defs.entities),
            views=[self._resolved(v) for v in defs.views],
            services=list(defs.services),
        )
        store = self.store
        with _feast_errors(f"Feast project {self.project}"):
            report, objects = _plan(
                defs,
                {e.name: e for e in store.list_entities()},
                {v.name: v for v in store.list_feature_views()},
                {s.name: s for s in store.list_feature_services()},
            )
            if objects:
                store.apply(objects)
        return report

    def views(self) -> list[ViewInfo]:
        with _feast_errors(f"Feast project {self.project}"):
            entities = {e.name: e for e in self.store.list_entities(allow_cache=True)}
            found = self.store.list_feature_views(allow_cache=True)
        return sorted(
            (_view_info(v, entities) for v in found if "mlcp.definition" in v.tags),
            key=lambda v: v.ref,
        )

    def view(self, ref: VersionedRef) -> ViewInfo:
        with _feast_errors(str(ref), "feature view"):
            found = self.store.get_feature_view(ref.feast_name, allow_registry_cache=True)
            entities = {e.name: e for e in self.store.list_entities(allow_cache=True)}
        if "mlcp.definition" not in found.tags:
            raise FeatureNotFound(str(ref), "feature view")
        return _view_info(found, entities)

    def services(self) -> list[ServiceInfo]:
        views = {v.ref: v for v in self.views()}
        with _feast_errors(f"Feast project {self.project}"):
            found = self.store.list_feature_services()
        return sorted(
            (_service_info(s, views) for s in found if "mlcp.features" in s.tags),
            key=lambda s: s.ref,
        )

    def service(self, ref: VersionedRef) -> ServiceInfo:
        with _feast_errors(str(ref), "feature service"):
            found = self.store.get_feature_service(ref.feast_name, allow_cache=True)
        if "mlcp.features" not in found.tags:
            raise FeatureNotFound(str(ref), "feature service")
        views = {v: self.view(v) for v in _service_views(found)}
        return _service_info(found, views)

    # -- data -----------------------------------------------------------------------------------
    def materialize(
        self,
        ref: VersionedRef,
        start: datetime,
        end: datetime,
        expectations: list[dict[str, Any]] | None = None,
        progress: Progress | None = None,
    ) -> MaterializationResult:
        """Check the source rows in the window, then write them online.

        The checks are the schema's (columns present, non-nullable ones not null), the
        view's own expectations (stored at apply) and ``expectations``. A critical failure
        raises DataQualityFailed and leaves the online store as it was. Naive datetimes
        are UTC. The window includes ``end``, as Feast's file offline store does.
        """
        say = progress or (lambda line: None)
        start, end = _utc(start), _utc(end)
        if start >= end:
            raise InvalidDataset(f"materialization window of {ref}", f"start {start} >= end {end}")
        info = self.view(ref)
        frame = _window(read_dataset(Path(info.source)), info, start, end)
        say(f"{ref}: {len(frame)} rows from {start.isoformat()} to {end.isoformat()}")
        checks = [
            *schema_expectations(info.definition, info.join_key),
            *info.definition.expectations,
            *(expectations or []),
        ]
        report = validate_frame(frame, checks)
        if not report.success:
            say(f"{ref}: refused, {len(report.failures)} critical expectation(s) failed")
            raise DataQualityFailed(str(ref), report.to_dict())
        say(f"{ref}: {len(checks)} expectations passed ({len(report.warnings)} warnings)")
        # Feast prints coloured lines and tqdm bars; the progress callable speaks instead.
        with _feast_errors(str(ref), "feature view"), _quiet():
            self.store.materialize(start_date=start, end_date=end, feature_views=[ref.feast_name])
        say(f"{ref}: online store updated")
        return MaterializationResult(ref, start, end, len(frame), report)

    def online(self, service: VersionedRef, entity_rows: list[dict[str, Any]]) -> dict[str, list]:
        """Latest values for each entity row: ``{join_key: [...], feature: [...]}`` with plain
        feature names (a service exposes each name once); missing values are None."""

        def unreachable(why: str) -> FeatureStoreError:
            return OnlineStoreUnavailable(str(service), why, 0)

        with _feast_errors(str(service), unreachable=unreachable):
            feature_service = self.store.get_feature_service(service.feast_name, allow_cache=True)
            try:
                response = self.store.get_online_features(
                    features=feature_service, entity_rows=entity_rows
                )
            except KeyError as exc:  # Feast's word for rows without the join keys
                raise InvalidDataset(f"entity rows for {service}", str(exc).strip("\"'")) from exc
            except ValueError as exc:  # a disabled view, or one in a state that can't serve
                raise FeatureStoreError(f"{service}: Feast refused the read: {exc}") from exc
            return dict(response.to_dict())

    def historical(self, service: VersionedRef, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Feast's point-in-time join of the service's features onto ``entity_df`` (which
        holds the join keys and ``event_timestamp``); rows keep ``entity_df``'s order."""
        order = "__mlcp_row"
        frame = entity_df.assign(**{order: range(len(entity_df))})
        with _feast_errors(str(service), "feature service"):
            feature_service = self.store.get_feature_service(service.feast_name, allow_cache=True)
            joined = self.store.get_historical_features(
                entity_df=frame, features=feature_service
            ).to_df()
        joined = joined.sort_values(order, kind="stable").drop(columns=order)
        return joined.reset_index(drop=True)

    def _resolved(self, view: FeatureViewDef) -> FeatureViewDef:
        source = Path(view.source)
        if source.is_absolute():
            return view
        return FeatureViewDef.from_dict({**view.to_dict(), "source": str(self.repo_path / source)})


# -- building Feast objects ---------------------------------------------------------------------
_FEAST_TYPES = {
    "float32": "Float32",
    "float64": "Float64",
    "int32": "Int32",
    "int64": "Int64",
    "string": "String",
    "bool": "Bool",
}


def _feast_type(dtype: str) -> Any:
    from feast import types

    return getattr(types, _FEAST_TYPES[dtype])


def _feast_entity(entity: EntityDef) -> Any:
    from feast import Entity
    from feast.value_type import ValueType

    value_type = ValueType.INT64 if entity.dtype == "int64" else ValueType.STRING
    return Entity(
        name=entity.name,
        join_keys=[entity.join_key],
        value_type=value_type,
        tags={"mlcp.dtype": entity.dtype},
    )


def _feast_view(view: FeatureViewDef, entity: EntityDef, feast_entity: Any) -> Any:
    from feast import FeatureView, FileSource
    from feast import Field as FeastField

    name = view.ref.feast_name
    source = FileSource(
        name=f"{name}__source", path=view.source, timestamp_field=view.timestamp_field
    )
    schema = [FeastField(name=entity.join_key, dtype=_feast_type(entity.dtype))]
    schema += [FeastField(name=f.name, dtype=_feast_type(f.dtype)) for f in view.fields]
    return FeatureView(
        name=name,
        entities=[feast_entity],
        schema=schema,
        source=source,
        ttl=timedelta(seconds=view.ttl_s),
        online=True,
        tags={
            "mlcp.name": view.name,
            "mlcp.version": str(view.version),
            "mlcp.schema_sha256": view.schema_sha256(),
            "mlcp.freshness_s": str(view.max_staleness_s),
            "mlcp.definition": json.dumps(view.to_dict(), sort_keys=True),
        },
    )


def _feast_service(
    service: FeatureServiceDef, defs: Definitions, feast_views: dict[VersionedRef, Any]
) -> Any:
    from feast import FeatureService

    projections = [feast_views[ref][names] for ref, names in defs.service_features(service).items()]
    return FeatureService(
        name=service.ref.feast_name,
        features=projections,
        tags={
            "mlcp.name": service.name,
            "mlcp.version": str(service.version),
            "mlcp.schema_sha256": service.schema_sha256(),
            "mlcp.features": json.dumps(list(service.features)),
        },
    )


def _plan(
    defs: Definitions, entities: dict[str, Any], views: dict[str, Any], services: dict[str, Any]
) -> tuple[ApplyReport, list[Any]]:
    """What to apply, given what is registered; DefinitionConflict before anything is."""
    report: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    objects: list[Any] = []

    def record(label: str, status: str, obj: Any) -> None:
        report[status].append(label)
        if status != "unchanged":
            objects.append(obj)

    feast_entities: dict[str, Any] = {}
    for entity in defs.entities:
        feast_entities[entity.name] = obj = _feast_entity(entity)
        record(f"entity {entity.name}", _entity_status(entities.get(entity.name), obj), obj)
    feast_views: dict[VersionedRef, Any] = {}
    for view in defs.views:
        entity_def = defs.entity(view.entity)
        feast_views[view.ref] = obj = _feast_view(view, entity_def, feast_entities[view.entity])
        record(f"view {view.ref}", _view_status(views.get(view.ref.feast_name), view), obj)
    for service in defs.services:
        obj = _feast_service(service, defs, feast_views)
        old = services.get(service.ref.feast_name)
        record(f"service {service.ref}", _service_status(old, service), obj)
    return ApplyReport(**{k: tuple(v) for k, v in report.items()}), objects


def _entity_status(old: Any, new: Any) -> str:
    if old is None:
        return "created"
    differences = _entity_differences(old, new)
    if differences:
        raise DefinitionConflict(f"entity {new.name}", differences)
    return "unchanged"


def _view_status(old: Any, view: FeatureViewDef) -> str:
    if old is None:
        return "created"
    if "mlcp.definition" not in old.tags:
        raise DefinitionConflict(str(view.ref), ["a Feast view of that name not made by mlcp"])
    before = FeatureViewDef.from_dict(json.loads(old.tags["mlcp.definition"]))
    if old.tags.get("mlcp.schema_sha256") != view.schema_sha256():
        raise DefinitionConflict(str(view.ref), _schema_differences(before, view))
    return "unchanged" if before == view else "updated"


def _service_status(old: Any, service: FeatureServiceDef) -> str:
    if old is None:
        return "created"
    if old.tags.get("mlcp.schema_sha256") != service.schema_sha256():
        before = json.loads(old.tags.get("mlcp.features", "[]"))
        raise DefinitionConflict(
            str(service.ref), [f"features {before} -> {list(service.features)}"]
        )
    return "unchanged"


def _entity_differences(old: Any, new: Any) -> list[str]:
    out = []
    if old.join_key != new.join_key:
        out.append(f"join key {old.join_key!r} -> {new.join_key!r}")
    if old.value_type != new.value_type:
        out.append(f"dtype {old.value_type.name.lower()} -> {new.value_type.name.lower()}")
    return out


def _schema_differences(old: FeatureViewDef, new: FeatureViewDef) -> list[str]:
    out = []
    if old.entity != new.entity:
        out.append(f"entity {old.entity!r} -> {new.entity!r}")
    if old.timestamp_field != new.timestamp_field:
        out.append(f"timestamp_field {old.timestamp_field!r} -> {new.timestamp_field!r}")
    before = {f.name: f for f in old.fields}
    after = {f.name: f for f in new.fields}
    out += [f"field {n!r} removed" for n in before if n not in after]
    out += [f"field {n!r} added" for n in after if n not in before]
    for name in before.keys() & after.keys():
        a, b = before[name], after[name]
        if a.dtype != b.dtype:
            out.append(f"field {name!r} dtype {a.dtype} -> {b.dtype}")
        if a.nullable != b.nullable:
            out.append(f"field {name!r} nullable {a.nullable} -> {b.nullable}")
    return sorted(out) or ["schema digest differs"]


# -- reading Feast objects back -----------------------------------------------------------------
def _view_info(view: Any, entities: dict[str, Any]) -> ViewInfo:
    definition = FeatureViewDef.from_dict(json.loads(view.tags["mlcp.definition"]))
    entity = entities.get(definition.entity)
    join_key = entity.join_key if entity is not None else view.entity_columns[0].name
    return ViewInfo(
        ref=definition.ref,
        entity=definition.entity,
        join_key=join_key,
        fields=tuple(definition.fields),
        freshness_s=definition.max_staleness_s,
        ttl_s=definition.ttl_s,
        source=definition.source,
        schema_sha256=view.tags["mlcp.schema_sha256"],
        definition=definition,
        tags=dict(view.tags),
    )


def _service_views(service: Any) -> list[VersionedRef]:
    return [VersionedRef.from_feast_name(p.name) for p in service.feature_view_projections]


def _service_info(service: Any, views: dict[VersionedRef, ViewInfo]) -> ServiceInfo:
    refs = _service_views(service)
    features: list[str] = []
    names: list[str] = []
    for ref, projection in zip(refs, service.feature_view_projections, strict=True):
        features += [f"{ref}:{f.name}" for f in projection.features]
        names += [f.name for f in projection.features]
    known = [views[r] for r in refs if r in views]
    return ServiceInfo(
        ref=VersionedRef.from_feast_name(service.name),
        features=tuple(features),
        feature_names=tuple(names),
        views=tuple(refs),
        join_keys=tuple(dict.fromkeys(v.join_key for v in known)),
        freshness_s=min((v.freshness_s for v in known), default=0),
        schema_sha256=service.tags.get("mlcp.schema_sha256", ""),
        tags=dict(service.tags),
    )


# -- helpers ------------------------------------------------------------------------------------
def _online_config(online_store: str, repo_path: Path) -> dict[str, Any]:
    if online_store.startswith(("redis://", "rediss://")):
        url = urlsplit(online_store)
        # redis-py keyword arguments; without timeouts a hung Redis would hang every read.
        params = {**REDIS_DEFAULTS, **dict(parse_qsl(url.query))}
        db = url.path.strip("/")
        if db:
            params["db"] = str(int(db))
        if url.password:
            params["password"] = unquote(url.password)
        if url.scheme == "rediss":
            params["ssl"] = "true"
        parts = [f"{url.hostname or 'localhost'}:{url.port or 6379}"]
        parts += [f"{k}={v}" for k, v in params.items()]
        return {"type": "redis", "connection_string": ",".join(parts)}
    if "://" in online_store:
        raise InvalidDefinition(
            f"online store {online_store!r}", "give a SQLite file path or redis://host:port[/db]"
        )
    return {"type": "sqlite", "path": str(repo_path / online_store)}


def _keep_file(path: Path, config: dict[str, Any]) -> None:
    """Write ``feature_store.yaml`` when it is missing or says something else."""
    import yaml

    text = (
        "# Written by mlcp from its settings (MLCP_FEAST_*), and rewritten when they change:\n"
        "# `feast -c <this folder> feature-views list` reads the project mlcp manages.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    if "@" in str(config["registry"].get("path", "")):
        tmp.chmod(0o600)  # it may hold the registry database's password
    tmp.replace(path)


def _fail_fast(store: FeatureStore) -> None:
    """One immediate retry instead of redis-py's three with exponential backoff (~3.5 s).

    A read against a Redis that is down should fail fast, so the feature client can fall
    back to its cache.
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    get_client = getattr(store.provider.online_store, "_get_client", None)
    if get_client is not None:  # Feast's RedisOnlineStore builds its client lazily here
        get_client(store.config.online_store).set_retry(Retry(NoBackoff(), 1))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _window(frame: pd.DataFrame, view: ViewInfo, start: datetime, end: datetime) -> pd.DataFrame:
    """The source rows Feast would materialize: ``start <= timestamp <= end``."""
    import pandas as pd

    column = view.definition.timestamp_field
    if column not in frame.columns:
        raise InvalidDataset(view.source, f"no timestamp column {column!r} (view {view.ref})")
    stamps = pd.to_datetime(frame[column], utc=True)
    rows = frame[(stamps >= start) & (stamps <= end)]
    wanted = [view.join_key, column, *(f.name for f in view.fields)]
    return rows[[c for c in wanted if c in rows.columns]].reset_index(drop=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@contextlib.contextmanager
def _feast_errors(
    what: str,
    kind: str = "feature service",
    unreachable: Callable[[str], FeatureStoreError] | None = None,
) -> Iterator[None]:
    """Translate Feast's exceptions and store connection failures to features.errors.

    ``what`` names the object (a ref for lookups); ``unreachable(why)`` builds the error
    for a store that can't be reached.
    """
    from feast import errors as fe
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except FeatureStoreError:
        raise
    except fe.FeatureServiceNotFoundException as exc:
        raise FeatureNotFound(what, "feature service") from exc
    except (fe.FeatureViewNotFoundException, fe.FeatureViewVersionNotFound) as exc:
        raise FeatureNotFound(what, "feature view") from exc
    except fe.FeastObjectNotFoundException as exc:
        raise FeatureNotFound(what, kind) from exc
    except (
        ConnectionError,
        sqlite3.OperationalError,
        OperationalError,
        RedisConnectionError,
        RedisTimeoutError,
    ) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if unreachable is not None:
            raise unreachable(why) from exc
        raise FeatureStoreError(f"{what}: a Feast store is unreachable: {why}") from exc
    except fe.FeastError as exc:
        raise FeatureStoreError(f"{what}: Feast refused: {exc}") from exc
