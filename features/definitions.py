"""Feature definitions as plain dataclasses, written in a Python file and applied to Feast.

A definitions file sets a module-level ``DEFINITIONS``; ``load_definitions`` runs it and
checks everything before anything reaches Feast:

    user = EntityDef("user", join_key="user_id")
    stats = FeatureViewDef(
        "user_stats", 1, entity="user", source="data/user_stats.parquet",
        fields=[Field("tenure", "int64", nullable=False), Field("spend", "float32")],
        expectations=[{"type": "expect_column_values_to_be_between",
                       "kwargs": {"column": "spend", "min_value": 0}, "severity": "critical"}],
    )
    churn = FeatureServiceDef("churn_features", 1, features=["user_stats@1"])
    DEFINITIONS = Definitions(entities=[user], views=[stats], services=[churn])

Relative source paths resolve against the definitions file's folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import runpy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from features.errors import FeatureStoreError, InvalidDefinition
from features.refs import VersionedRef

Dtype = Literal["float32", "float64", "int32", "int64", "string", "bool"]
EntityDtype = Literal["int64", "string"]
Severity = Literal["critical", "warning"]

_EXPECTATION = re.compile(r"^expect_[a-z0-9_]+$")


@dataclass(frozen=True)
class Field:
    """One feature column: ``Field("spend", "float32", nullable=False)``."""

    name: str
    dtype: Dtype
    nullable: bool = True


@dataclass(frozen=True)
class EntityDef:
    """What features are keyed by: ``EntityDef("user", join_key="user_id")``."""

    name: str
    join_key: str
    dtype: EntityDtype = "int64"


@dataclass(frozen=True)
class FeatureViewDef:
    """One version of a feature view; a schema change needs a new version.

    ``freshness_s`` is how stale online values may get (default ``ttl_s``, at most ``ttl_s``);
    ``expectations`` are GX expectations checked before each materialization:
    ``{"type": "expect_...", "kwargs": {...}, "severity": "critical" | "warning"}``.
    """

    name: str
    version: int
    entity: str
    fields: list[Field]
    source: str
    timestamp_field: str = "event_timestamp"
    ttl_s: int = 86400
    freshness_s: int | None = None
    expectations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref(self) -> VersionedRef:
        return VersionedRef(self.name, self.version)

    @property
    def max_staleness_s(self) -> int:
        """``freshness_s``, or ``ttl_s`` when not given."""
        return self.ttl_s if self.freshness_s is None else self.freshness_s

    def schema(self) -> dict[str, Any]:
        """What a version pins: entity, fields (sorted by name), timestamp field."""
        return {
            "entity": self.entity,
            "fields": [
                {"name": f.name, "dtype": f.dtype, "nullable": f.nullable}
                for f in sorted(self.fields, key=lambda f: f.name)
            ],
            "timestamp_field": self.timestamp_field,
        }

    def schema_sha256(self) -> str:
        """Digest of ``schema()``; the source path, TTLs and expectations are not part of it."""
        return _sha256(self.schema())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureViewDef:
        return cls(**{**data, "fields": [Field(**f) for f in data["fields"]]})


@dataclass(frozen=True)
class FeatureServiceDef:
    """One version of a feature service: what a model version reads.

    ``features`` holds ``"view@version:feature"`` or ``"view@version"`` (all its fields).
    """

    name: str
    version: int
    features: list[str]

    @property
    def ref(self) -> VersionedRef:
        return VersionedRef(self.name, self.version)

    def schema_sha256(self) -> str:
        return _sha256(sorted(self.features))


@dataclass(frozen=True)
class Definitions:
    """Everything one definitions file declares; ``validate()`` names the first bad field."""

    entities: list[EntityDef] = field(default_factory=list)
    views: list[FeatureViewDef] = field(default_factory=list)
    services: list[FeatureServiceDef] = field(default_factory=list)

    def view(self, ref: VersionedRef) -> FeatureViewDef:
        for view in self.views:
            if view.ref == ref:
                return view
        raise InvalidDefinition(f"feature view {ref}", "is not defined")

    def entity(self, name: str) -> EntityDef:
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise InvalidDefinition(f"entity {name!r}", "is not defined")

    def service_features(self, service: FeatureServiceDef) -> dict[VersionedRef, list[str]]:
        """The fields a service takes from each view version, in the order written."""
        out: dict[VersionedRef, list[str]] = {}
        for item in service.features:
            view_text, _, feature = item.partition(":")
            view = self.view(VersionedRef.parse(view_text))
            names = [feature] if feature else [f.name for f in view.fields]
            out.setdefault(view.ref, [])
            out[view.ref] += [n for n in names if n not in out[view.ref]]
        return out

    def validate(self) -> None:
        """Raise InvalidDefinition naming the object and field of the first problem."""
        _unique("entity", [e.name for e in self.entities])
        for entity in self.entities:
            _check_entity(entity)
        _unique("feature view", [str(_ref("feature view", v)) for v in self.views])
        for view in self.views:
            _check_view(view, self)
        _unique("feature service", [str(_ref("feature service", s)) for s in self.services])
        for service in self.services:
            _check_service(service, self)


def load_definitions(path: Path) -> Definitions:
    """Run a definitions file, take its ``DEFINITIONS``, validate it, resolve source paths."""
    path = Path(path)
    if not path.is_file():
        raise InvalidDefinition(str(path), "no such definitions file")
    try:
        namespace = runpy.run_path(str(path), run_name="mlcp_definitions")
    except FeatureStoreError:
        raise
    except SystemExit as exc:  # sys.exit() in the file would end mlcp itself, silently
        raise InvalidDefinition(
            str(path),
            f"it called sys.exit({exc.code!r}) while being loaded; a definitions file only sets "
            'DEFINITIONS (put script code under `if __name__ == "__main__":`)',
        ) from exc
    except Exception as exc:  # the user's file: anything it raises is a bad definition
        raise InvalidDefinition(str(path), f"running it failed: {exc!r}") from exc
    defs = namespace.get("DEFINITIONS")
    if not isinstance(defs, Definitions):
        raise InvalidDefinition(
            str(path),
            "set a module-level DEFINITIONS = Definitions(entities=[...], views=[...], "
            f"services=[...]) (found {type(defs).__name__})",
        )
    defs.validate()
    folder = path.resolve().parent
    views = [replace(v, source=str(folder / v.source)) for v in defs.views]
    return replace(defs, views=views)


# -- checks -------------------------------------------------------------------------------------
def _sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _ref(kind: str, obj: FeatureViewDef | FeatureServiceDef) -> VersionedRef:
    what = f"{kind} {getattr(obj, 'name', obj)!r}"
    if not isinstance(obj, FeatureViewDef | FeatureServiceDef):
        raise InvalidDefinition(what, f"is a {type(obj).__name__}, not a {kind} definition")
    version = obj.version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidDefinition(f"{what} field 'version'", f"must be an int >= 1, not {version!r}")
    _check_name(f"{what} field 'name'", obj.name)
    return obj.ref


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str):
        raise InvalidDefinition(what, f"must be a string, not {name!r}")
    try:
        VersionedRef.parse(f"{name}@1")
    except FeatureStoreError:
        raise InvalidDefinition(
            what, f"{name!r}: use lowercase letters, digits and single underscores (<= 63 chars)"
        ) from None


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidDefinition(f"{kind} {name}", "is defined twice")
        seen.add(name)


def _check_entity(entity: EntityDef) -> None:
    what = f"entity {getattr(entity, 'name', entity)!r}"
    if not isinstance(entity, EntityDef):
        raise InvalidDefinition(what, f"is a {type(entity).__name__}, not an EntityDef")
    _check_name(f"{what} field 'name'", entity.name)
    _check_name(f"{what} field 'join_key'", entity.join_key)
    if entity.dtype not in get_args(EntityDtype):
        raise InvalidDefinition(
            f"{what} field 'dtype'", f"{entity.dtype!r} is not one of {get_args(EntityDtype)}"
        )


def _check_view(view: FeatureViewDef, defs: Definitions) -> None:
    what = f"feature view {view.ref}"
    if not any(isinstance(e, EntityDef) and e.name == view.entity for e in defs.entities):
        known = sorted(e.name for e in defs.entities)
        raise InvalidDefinition(
            f"{what} field 'entity'", f"unknown entity {view.entity!r}; defined: {known}"
        )
    if not isinstance(view.source, str) or not view.source:
        raise InvalidDefinition(f"{what} field 'source'", "give the parquet file's path")
    _check_name(f"{what} field 'timestamp_field'", view.timestamp_field)
    if not isinstance(view.fields, list | tuple) or not view.fields:
        raise InvalidDefinition(f"{what} field 'fields'", "give at least one Field")
    reserved = {view.timestamp_field, defs.entity(view.entity).join_key}
    names: set[str] = set()
    for item in view.fields:
        if not isinstance(item, Field):
            raise InvalidDefinition(f"{what} field 'fields'", f"{item!r} is not a Field")
        where = f"{what} field {item.name!r}"
        _check_name(where, item.name)
        if item.name in reserved or item.name in names:
            raise InvalidDefinition(where, "is defined twice (or is the join key / timestamp)")
        names.add(item.name)
        if item.dtype not in get_args(Dtype):
            raise InvalidDefinition(where, f"dtype {item.dtype!r} is not one of {get_args(Dtype)}")
        if not isinstance(item.nullable, bool):
            raise InvalidDefinition(where, f"nullable must be True or False, not {item.nullable!r}")
    if isinstance(view.ttl_s, bool) or not isinstance(view.ttl_s, int) or view.ttl_s < 1:
        raise InvalidDefinition(f"{what} field 'ttl_s'", f"must be an int >= 1, not {view.ttl_s!r}")
    fresh = view.freshness_s
    if fresh is not None and (isinstance(fresh, bool) or not isinstance(fresh, int) or fresh < 1):
        raise InvalidDefinition(
            f"{what} field 'freshness_s'", f"must be an int >= 1, not {fresh!r}"
        )
    if view.max_staleness_s > view.ttl_s:
        raise InvalidDefinition(
            f"{what} field 'freshness_s'",
            f"{fresh} s is longer than ttl_s ({view.ttl_s} s): values expire before then",
        )
    for i, spec in enumerate(view.expectations):
        check_expectation(f"{what} expectations[{i}]", spec)


def check_expectation(what: str, spec: object) -> None:
    """An expectation dict's shape (GX itself checks the arguments when it runs)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise InvalidDefinition(what, 'write {"type": "expect_...", "kwargs": {...}}')
    if not _EXPECTATION.match(spec["type"]):
        raise InvalidDefinition(what, f"{spec['type']!r} is not a GX expectation name")
    if not isinstance(spec.get("kwargs", {}), dict):
        raise InvalidDefinition(what, "'kwargs' must be a dict")
    if spec.get("severity", "critical") not in get_args(Severity):
        raise InvalidDefinition(what, "'severity' must be 'critical' or 'warning'")
    unknown = set(spec) - {"type", "kwargs", "severity"}
    if unknown:
        raise InvalidDefinition(what, f"unknown keys {sorted(unknown)}")


def _check_service(service: FeatureServiceDef, defs: Definitions) -> None:
    what = f"feature service {service.ref}"
    if not isinstance(service.features, list | tuple) or not service.features:
        raise InvalidDefinition(f"{what} field 'features'", "give at least one view@version")
    for item in service.features:
        where = f"{what} feature {item!r}"
        if not isinstance(item, str):
            raise InvalidDefinition(where, 'write "view@version:feature" or "view@version"')
        view_text, _, feature = item.partition(":")
        try:
            ref = VersionedRef.parse(view_text)
        except FeatureStoreError as exc:
            raise InvalidDefinition(where, str(exc)) from None
        view = next((v for v in defs.views if v.ref == ref), None)
        if view is None:
            versions = sorted(str(v.ref) for v in defs.views if v.name == ref.name)
            raise InvalidDefinition(where, f"unknown feature view {ref}; defined: {versions}")
        if feature and feature not in {f.name for f in view.fields}:
            raise InvalidDefinition(
                where, f"{ref} has no field {feature!r}; it has {[f.name for f in view.fields]}"
            )
    seen: dict[str, VersionedRef] = {}
    for ref, names in defs.service_features(service).items():
        for name in names:
            if name in seen and seen[name] != ref:
                raise InvalidDefinition(
                    f"{what} feature {name!r}",
                    f"comes from both {seen[name]} and {ref}; online reads return plain "
                    "feature names, so a service takes each name once",
                )
            seen[name] = ref
