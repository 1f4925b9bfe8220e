"""`OnlineBackend` that reads a Feast online store's SQLite tables or Redis hashes directly,
in Feast's own storage format, without ``get_online_features``' per-call work.

    backend = online_backend(store)      # direct for SQLite and Redis, else FeastOnlineBackend
    client = FeatureClient(backend, generations)

Feast stays the writer and the contract: keys are Feast's (``serialize_entity_key``, its Redis
key and field hashes, its table ids), values are Feast's ``ValueProto`` converted as Feast's
``feast_value_type_to_python_type`` does, and which views, join keys and features a service
reads comes from Feast's registry (through `FeastOnlineBackend`, which also answers ``views``
and ``freshness_s``). What is skipped is the request machinery Feast runs on every call (about
0.6 ms of Python before any store read, measured on 2 cores): resolving the service,
converting columns, building and unpacking a response proto. A service's plan (tables, key
encoders, fields) is made once; a read is one query per view (SQLite) or one pipelined round
trip for every view (Redis).

Two shortcuts keep a cold read cheap, each checked against Feast's own function: a single
INT64 or STRING join key is encoded with a prefix computed once (verified at plan time
against ``serialize_entity_key``; other keys use it), and scalar values are read off the
proto as Feast would return them (others go through Feast's converter).
``tests/features/test_online_direct.py`` compares every value and status with
``get_online_features`` on real stores.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.online_feast import FeastOnlineBackend, unavailable
from features.refs import VersionedRef

if TYPE_CHECKING:
    import feast

    from features.client import OnlineBackend

_MAX_PARAMS = 999  # SQLite bounds the ?s of one statement (999 in older builds)
# Proto fields Feast's converter returns as they are (unless the feature is a UUID type).
_SCALARS = frozenset(
    {"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val", "bytes_val"}
)
KeyEncoder = Callable[[list[dict[str, Any]]], list[bytes]]


@dataclass(frozen=True)
class _ViewPlan:
    """How one feature view of a service is read: its storage names, key encoder and fields."""

    name: str  # the Feast feature view (its table, or the prefix of its Redis fields)
    encode: KeyEncoder  # entity rows -> serialized entity keys, as Feast stores them
    fields: tuple[str, ...]  # the features the service reads from this view
    convert: tuple[Callable[[Any], Any], ...]  # ValueProto -> Python, per field
    table: str  # SQLite table id
    redis_fields: tuple[bytes, ...]  # murmur3 of "view:feature" per field, then b"_ts:view"


def online_backend(store: feast.FeatureStore) -> OnlineBackend:
    """The fastest backend that reads ``store`` exactly as Feast does: direct for its SQLite and
    Redis online stores (without Feast's online versioning), Feast's own read otherwise."""
    config = store.config
    kind = str(getattr(config.online_store, "type", ""))
    versioned = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    if versioned or kind not in ("sqlite", "redis"):
        return FeastOnlineBackend(store)
    return DirectOnlineBackend(store)


class DirectOnlineBackend:
    """Reads SQLite and Redis online stores directly; see the module docstring.

    ``DirectOnlineBackend(store)``; ``backend.read(VersionedRef.parse("churn@1"), rows)``.
    """

    def __init__(self, store: feast.FeatureStore, described: FeastOnlineBackend | None = None):
        from feast.infra.online_stores.redis import RedisOnlineStore
        from feast.infra.online_stores.sqlite import SqliteOnlineStore
        from feast.protos.feast.types.Value_pb2 import Value

        self.store = store
        self.feast = described or FeastOnlineBackend(store)
        config = store.config
        self._project = config.project
        self._key_version = config.entity_key_serialization_version
        self._value = Value
        online = store._get_provider().online_store  # Feast's own store object, as it reads
        self._reader: Callable[[Sequence[_ViewPlan], list[list[bytes]]], list[list[Any]]]
        if isinstance(online, SqliteOnlineStore):
            self._reader = _SqliteReader(SqliteOnlineStore._get_db_path(config), Value).read
        elif isinstance(online, RedisOnlineStore):
            self._redis = online._get_client(config.online_store)  # Feast's client and options
            self._reader = self._read_redis
        else:
            raise TypeError(f"no direct reader for {type(online).__name__}; use online_backend()")
        self._plans: dict[VersionedRef, list[_ViewPlan]] = {}
        self._lock = threading.Lock()

    def views(self, service: VersionedRef) -> list[str]:
        return self.feast.views(service)

    def freshness_s(self, service: VersionedRef) -> float | None:
        return self.feast.freshness_s(service)

    def read(
        self, service: VersionedRef, entity_rows: list[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        plans = self._plan(service)
        found = self._find(service, plans, entity_rows)
        results: list[dict[str, Any] | None] = []
        for i in range(len(entity_rows)):
            values: dict[str, Any] = {}
            for plan, per_view in zip(plans, found, strict=True):
                for name, convert, proto in zip(
                    plan.fields, plan.convert, per_view[i], strict=True
                ):
                    values[name] = None if proto is None else convert(proto)
            # As FeastOnlineBackend: an entity the store does not know is a row of nulls.
            known = any(value is not None for value in values.values())
            results.append(values if known else None)
        return results

    def stored(
        self, service: VersionedRef, entity_rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Each row's features as Feast's online read finds them: the stored ``ValueProto``
        (status PRESENT), or None where Feast reports NOT_FOUND."""
        plans = self._plan(service)
        rows: list[dict[str, Any]] = [{} for _ in entity_rows]
        for plan, per_view in zip(plans, self._find(service, plans, entity_rows), strict=True):
            for row, protos in zip(rows, per_view, strict=True):
                row.update(zip(plan.fields, protos, strict=True))
        return rows

    def _find(
        self, service: VersionedRef, plans: list[_ViewPlan], entity_rows: list[dict[str, Any]]
    ) -> list[list[Any]]:
        keys = [plan.encode(entity_rows) for plan in plans]
        with unavailable(f"online store of {service}"):
            return self._reader(plans, keys)

    def _read_redis(self, plans: Sequence[_ViewPlan], keys: list[list[bytes]]) -> list[list[Any]]:
        """One pipelined round trip: HMGET of every view's fields for every entity key."""
        project = self._project.encode()
        pipe = self._redis.pipeline(transaction=False)
        for plan, view_keys in zip(plans, keys, strict=True):
            for key in view_keys:
                pipe.hmget(key + project, plan.redis_fields)
        replies = iter(pipe.execute())
        out: list[list[Any]] = []
        for view_keys in keys:
            per_view = []
            for _ in view_keys:
                *values, _ts = next(replies)
                # Feast's Redis read reports every requested field PRESENT, empty if unset.
                per_view.append([_proto(self._value, blob or b"") for blob in values])
            out.append(per_view)
        return out

    # -- plans --------------------------------------------------------------------------------
    def _plan(self, service: VersionedRef) -> list[_ViewPlan]:
        plans = self._plans.get(service)
        if plans is None:
            plans = self._make_plan(service)
            with self._lock:
                plans = self._plans.setdefault(service, plans)  # versions are immutable
        return plans

    def _make_plan(self, service: VersionedRef) -> list[_ViewPlan]:
        from feast.infra.online_stores.helpers import _mmh3, compute_table_id

        feast_service = self.feast.feast_service(service)
        plans = []
        with unavailable(f"feature registry, reading {service}"):
            for projection in feast_service.feature_view_projections:
                view = self.store.get_feature_view(projection.name)
                types = {f.name: f.dtype.to_value_type() for f in view.features}
                fields = tuple(f.name for f in projection.features)
                aliases = projection.join_key_map  # a projection may rename join keys
                keys = [
                    (c.name, aliases.get(c.name, c.name), c.dtype.to_value_type())
                    for c in view.entity_columns
                ]
                plans.append(
                    _ViewPlan(
                        name=view.name,
                        encode=_key_encoder(keys, self._key_version),
                        fields=fields,
                        convert=tuple(_converter(types[f]) for f in fields),
                        table=compute_table_id(self._project, view, False),
                        redis_fields=(
                            *(_mmh3(f"{view.name}:{f}") for f in fields),
                            f"_ts:{view.name}".encode(),
                        ),
                    )
                )
        return plans


def _key_encoder(keys: list[tuple[str, str, Any]], version: int) -> KeyEncoder:
    """Rows -> Feast's serialized entity keys. ``keys``: (join key, row key, ValueType)."""
    from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import ValueType
    from feast.type_map import python_values_to_proto_values

    join_keys = tuple(k for k, _, _ in keys)

    def general(rows: list[dict[str, Any]]) -> list[bytes]:
        try:
            columns = [
                python_values_to_proto_values([row[name] for row in rows], vtype)
                for _, name, vtype in keys
            ]
        except KeyError as exc:
            raise ValueError(f"entity rows need the join key {exc.args[0]!r}") from None
        return [
            serialize_entity_key(
                EntityKey(join_keys=join_keys, entity_values=values),
                entity_key_serialization_version=version,
            )
            for values in zip(*columns, strict=True)
        ]

    if len(keys) != 1 or version < 3 or keys[0][2].name not in ("INT64", "STRING"):
        return general
    _, name, vtype = keys[0]
    prefix = serialize_entity_key_prefix([join_keys[0]], version)
    kind: type = int if vtype.name == "INT64" else str
    if kind is int:
        head = prefix + struct.pack("<II", ValueType.INT64, 8)
        pack: Callable[[Any], bytes] = struct.Struct("<q").pack
    else:
        head = prefix + struct.pack("<I", ValueType.STRING)

        def pack(value: Any) -> bytes:
            raw = value.encode()
            return struct.pack("<I", len(raw)) + raw

    def fast(rows: list[dict[str, Any]]) -> list[bytes]:
        try:
            values = [row[name] for row in rows]
        except KeyError as exc:
            raise ValueError(f"entity rows need the join key {exc.args[0]!r}") from None
        if any(type(v) is not kind for v in values):  # numpy scalars, bools...: Feast decides
            return general(rows)
        return [head + pack(v) for v in values]

    samples: list[dict[str, Any]] = [
        {name: v} for v in ((0, -1, 2**40) if kind is int else ("a", "é", ""))
    ]
    return fast if fast(samples) == general(samples) else general


def _converter(vtype: Any) -> Callable[[Any], Any]:
    """ValueProto -> Python for one feature, as Feast's ``feast_value_type_to_python_type``."""
    from feast.type_map import feast_value_type_to_python_type

    uuid_like = vtype.name.startswith(("UUID", "TIME_UUID"))

    def convert(proto: Any) -> Any:
        which = proto.WhichOneof("val")
        if which is None:
            return None
        if which in _SCALARS and not uuid_like:
            return getattr(proto, which)
        return feast_value_type_to_python_type(proto, vtype)

    return convert


class _SqliteReader:
    """Feast's SQLite online tables, read with one connection per thread."""

    def __init__(self, path: str, value_type: Any) -> None:
        self.path = path
        self._value = value_type
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, check_same_thread=False)
        return conn

    def read(self, plans: Sequence[_ViewPlan], keys: list[list[bytes]]) -> list[list[Any]]:
        conn = self._conn()
        out: list[list[Any]] = []
        for plan, view_keys in zip(plans, keys, strict=True):
            unique = list(dict.fromkeys(view_keys))
            stored: dict[bytes, dict[str, bytes]] = {}
            for start in range(0, len(unique), _MAX_PARAMS):
                chunk = unique[start : start + _MAX_PARAMS]
                rows = conn.execute(
                    f'SELECT entity_key, feature_name, value FROM "{plan.table}" '
                    f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for key, feature, blob in rows:
                    stored.setdefault(key, {})[feature] = blob
            per_view = []
            for key in view_keys:
                found = stored.get(key, {})
                per_view.append([_proto(self._value, found.get(f)) for f in plan.fields])
            out.append(per_view)
        return out


def _proto(value_type: Any, blob: bytes | None) -> Any:
    """A stored ValueProto, or None where nothing is stored (Feast's NOT_FOUND)."""
    if blob is None:
        return None
    value = value_type()
    value.ParseFromString(blob)
    return value
