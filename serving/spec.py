"""What serving needs from outside, as values and interfaces the control plane implements.

``serving`` imports neither mlflow, feast nor the other mlcp packages: the control plane
hands over a `ModelLoader` (MLflow underneath), a `FeatureLookup` (the cached feature
client), a `DesiredStateSource` (its database) and a `WindowSink` (where replicas report).

    loaded = loader.load("churn", 3)          # LoadedModel(spec=ModelSpec(...), module=...)
    rows = lookup.lookup("churn_features@1", [{"customer_id": 7}])
    state = source.read()                      # {"churn": Deployment(champion=3, ...)}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from serving.config import ServingPolicy

if TYPE_CHECKING:
    import torch

    from serving.windows import Window


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor in Open Inference Protocol terms: ``datatype`` is ``FP32``,
    ``INT64``..., ``shape`` uses -1 for a variable dimension (the batch)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSpec:
    """A served version's contract: its tensors, and where its features come from.

    ``feature_names`` are the input columns in order, named as the pinned feature service
    names them; ``reference`` is the training data's reference statistics
    (``{"rows": n, "features": {name: {"histogram": {"edges": [...]}, ...}}}``), whose bin
    edges the window sketches reuse so drift can be computed against them;
    ``prediction_reference`` is the same for the model's first output
    (``{"output": {"histogram": {"edges": [...]}}, ...}``); ``serving`` is what the model's
    policy says about serving it (its prediction cache, its clients' limits).
    """

    name: str
    version: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_service: str | None = None
    feature_names: tuple[str, ...] = ()
    reference: Mapping[str, Any] | None = None
    allow_nan: bool = False
    prediction_reference: Mapping[str, Any] | None = None
    serving: ServingPolicy = field(default_factory=ServingPolicy)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class LoadedModel:
    """A version's module on the CPU, as the loader returns it, with its spec."""

    spec: ModelSpec
    module: torch.nn.Module


class ModelLoader(Protocol):
    """Loads registered versions; the control plane implements it on the registry (MLflow)."""

    def load(self, name: str, version: int) -> LoadedModel:
        """The version's module and spec; raises `serving.errors.ModelLoadFailed`."""
        ...


@dataclass(frozen=True, slots=True)
class StaleFeatures:
    """An entity's features served past their freshness (the store was down): ``age_s`` old."""

    values: Mapping[str, Any]
    age_s: float


# One entity's answer from a lookup: its features, None (the store does not know it), stale
# features, or the error that fails the request holding it (e.g. `FeaturesUnavailable`).
LookupRow = Mapping[str, Any] | StaleFeatures | Exception | None


class FeatureLookup(Protocol):
    """Reads online features of a pinned feature service version, e.g. ``churn_features@1``."""

    def lookup(self, service: str, entities: list[dict[str, Any]]) -> list[LookupRow]:
        """One `LookupRow` per entity, in order: a mapping of feature name to value, None for
        an unknown entity, `StaleFeatures`, or a `serving.errors.FeaturesUnavailable` for an
        entity the store could not give (only the requests holding such rows fail).
        Raises `serving.errors.FeaturesUnavailable` when the store can't answer at all and
        `serving.errors.InvalidInput` when the entity keys are wrong."""
        ...

    def warm(self, service: str) -> None:
        """Open what looking ``service`` up needs (clients, definitions) before a version that
        pins it reports ready; raises `serving.errors.FeaturesUnavailable`."""
        ...

    def generation(self, service: str) -> Hashable | None:
        """The materialization generation of ``service``'s data as the lookup serves it now
        (it changes when new data lands), or None when unknown. Must not block: the
        prediction cache reads it per request, and never caches under None. Features looked
        up after this returned are at least as new as what it names."""
        ...


@dataclass(frozen=True)
class Deployment:
    """The desired state of one model: who answers, who gets a share, who shadows.

    ``canary_percent`` of the traffic (by entity key hash) goes to ``challenger``; ``shadow``
    gets a copy of every request and its answer is recorded, never returned.
    """

    name: str
    champion: int | None
    challenger: int | None = None
    canary_percent: int = 0
    shadow: int | None = None
    revision: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.canary_percent <= 100:
            raise ValueError(f"canary_percent must be within 0..100, got {self.canary_percent}")

    @property
    def versions(self) -> frozenset[int]:
        """Every version this deployment needs loaded."""
        return frozenset(v for v in (self.champion, self.challenger, self.shadow) if v is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "canary_percent": self.canary_percent,
            "shadow": self.shadow,
            "revision": self.revision,
        }

    def role(self, version: int) -> str:
        if version == self.champion:
            return "champion"
        if version == self.challenger:
            return "challenger"
        return "shadow" if version == self.shadow else "retired"


class DesiredStateSource(Protocol):
    """Where a replica reads what it should serve; the control plane's database."""

    def read(self) -> dict[str, Deployment]:
        """Every model with a champion (or a challenger), by name."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Block until the state may have changed or ``timeout_s`` passed (a plain poll
        just sleeps; PostgreSQL's LISTEN/NOTIFY returns early)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReplicaStatus:
    """A replica's heartbeat: what it serves now, so the control plane knows which replicas
    have converged on the desired state (and which still serve an older one).

    ``serving`` holds the deployments it routes by (after load failures); ``standby`` the
    versions it keeps loaded without traffic (a recent champion, so a rollback is a route
    flip); ``failures`` the versions it could not load, with why.
    """

    replica: str
    started_at: datetime
    at: datetime
    serving: Mapping[str, Deployment]
    standby: tuple[str, ...] = ()
    failures: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "started_at": self.started_at.isoformat(),
            "at": self.at.isoformat(),
            "serving": {name: d.to_dict() for name, d in self.serving.items()},
            "standby": list(self.standby),
            "failures": dict(self.failures),
        }


class WindowSink(Protocol):
    """Where a replica reports its per-version windows and heartbeats for the controller.

    Both are called off the event loop and may raise when the database is away: the
    replica keeps its windows (bounded) and sends them once a report succeeds again.
    """

    def report(self, windows: list[Window]) -> None: ...

    def heartbeat(self, status: ReplicaStatus) -> None: ...
