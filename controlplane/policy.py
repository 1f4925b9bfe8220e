"""Promotion policies: one YAML file per model, validated on load, stored by revision.

    gates:
      metrics:   [{metric: auc, min: 0.75}]
      champion:  [{metric: auc, direction: higher, max_drop: 0.01}]
      data_quality:
        expectations:
          - {type: expect_column_values_to_not_be_null, kwargs: {column: tenure}}
      schema:    {inputs: [{dtype: float32, shape: [-1, 5]}]}
      latency:   {batch_sizes: [1, 32], p99_ms: 50, machine_class: ci-2core}
      drift_reference: true
    approval: {required: false}
    canary:                          # the rollback controller walks these steps
      steps: [5, 25, 50]             # percent of traffic; production after the last
      interval_s: 60                 # one analysis per interval
      min_requests: 100              # per analysis, else inconclusive
      success_windows: 3             # passing analyses per step
      failure_limit: 0               # failed analyses tolerated; one more rolls back
      inconclusive_limit: 10         # in a row, then the canary holds and says why
    slo:      {p99_ms: 100, max_error_rate: 0.01, breach_windows: 3, max_canary_cost_ratio: 1.5}
    rollback: {max_per_hour: 3}
    drift:    {action: rollback, target_run_length: 100000, min_psi: 0.05}
    serving:
      cache: {ttl_s: 60, max_entries: 10000}   # a prediction cache per version (default off)
      limits: {rate_per_s: 100, burst: 200}    # per client; over it 429 + Retry-After
      priority: normal                         # class of requests without X-Priority

A bad key is refused with its path: ``gates.metrics[0].min: Input should be a valid number``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controlplane.errors import InvalidPolicy, NoPolicy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from controlplane.db.models import PolicyRow
    from registry.gates.base import Gate


class _Strict(BaseModel):
    # No NaN or Infinity: a threshold of NaN compares false both ways, so it passes anything.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MetricFloor(_Strict):
    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> MetricFloor:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self


class ChampionRule(_Strict):
    metric: str
    direction: Literal["higher", "lower"] = "higher"
    max_drop: float | None = Field(default=None, ge=0)
    max_relative_drop: float | None = Field(default=None, ge=0)


class Expectation(_Strict):
    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    severity: Literal["critical", "warning"] = "critical"


class DataQuality(_Strict):
    # Not "on": YAML 1.1 reads a bare `on:` key as the boolean true.
    datasets: tuple[Literal["evaluation", "training"], ...] = ("evaluation", "training")
    expectations: list[Expectation] = Field(min_length=1)


class TensorDecl(_Strict):
    dtype: str
    shape: tuple[int, ...]
    name: str | None = None


class SchemaRule(_Strict):
    inputs: list[TensorDecl] = Field(min_length=1)


class LatencyBudget(_Strict):
    batch_sizes: list[int] = Field(default=[1], min_length=1)
    p99_ms: float = Field(gt=0)
    p50_ms: float | None = Field(default=None, gt=0)
    iterations: int = Field(default=50, ge=5, le=10_000)
    rounds: int = Field(default=5, ge=1, le=100)
    # The machine class the budget was set on (MLCP_MACHINE_CLASS there); elsewhere the gate
    # refuses to judge rather than compare a GPU budget with a CPU runner.
    machine_class: str | None = Field(default=None, min_length=1, max_length=200)


class Gates(_Strict):
    metrics: list[MetricFloor] = Field(default_factory=list)
    champion: list[ChampionRule] = Field(default_factory=list)
    data_quality: DataQuality | None = None
    schema_: SchemaRule | None = Field(default=None, alias="schema")
    latency: LatencyBudget | None = None
    drift_reference: bool = False
    # A policy with no gate lets every version through: it must say so (`none: true`).
    none: bool | None = None  # None, not False: a stored policy's body (and sha256) stays

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    def named(self) -> bool:
        """Whether any gate is named."""
        return bool(
            self.metrics
            or self.champion
            or self.data_quality
            or self.schema_
            or self.latency
            or self.drift_reference
        )


class Approval(_Strict):
    required: bool = False


class Canary(_Strict):
    """How a canary walks to production (read by the rollback controller).

    Its weight goes through ``steps`` (percent of traffic); each step needs
    ``success_windows`` passing analyses (one per ``interval_s``); more than
    ``failure_limit`` failed analyses roll it back; an analysis with fewer than
    ``min_requests`` requests is inconclusive, and ``inconclusive_limit`` of them in a row
    hold the canary (it never promotes on too little evidence). After the last step it
    becomes production (unless ``auto_promote`` is false: then it waits for `mlcp promote`).
    """

    steps: tuple[int, ...] = Field(default=(10, 50), min_length=1)
    interval_s: float = Field(default=60.0, gt=0, le=86_400)
    min_requests: int = Field(default=100, ge=1)
    success_windows: int = Field(default=3, ge=1)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=10, ge=1)
    auto_promote: bool = True

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        # Policies stored before canary steps said {percent, min_requests, analysis_windows}.
        if isinstance(data, dict) and ("percent" in data or "analysis_windows" in data):
            data = dict(data)
            if "percent" in data:
                data.setdefault("steps", [data.pop("percent")])
            if "analysis_windows" in data:
                data.setdefault("success_windows", data.pop("analysis_windows"))
        return data

    @model_validator(mode="after")
    def _increasing(self) -> Canary:
        if any(not 1 <= s <= 99 for s in self.steps):
            raise ValueError("steps are percentages of traffic, each within 1..99")
        if list(self.steps) != sorted(set(self.steps)):
            raise ValueError("steps must increase: [5, 25, 50]")
        return self


class Slo(_Strict):
    """What every live version must meet, checked on every analysis window.

    ``max_error_rate`` bounds failed requests (5xx and 503/504 rejections, not client
    errors) among those served; ``p99_ms`` the 99th percentile latency. A canary is also
    held to its champion over the same windows (``max_canary_p99_ratio``, and an error rate
    not significantly higher); the champion to its own recent ``baseline_windows``
    (``max_baseline_p99_ratio``, same error test). Counts are compared with exact tests at
    significance ``alpha``, so a handful of requests can neither fail nor pass a check by
    chance. In production, ``breach_windows`` failed analyses in a row confirm a breach.
    """

    p99_ms: float | None = Field(default=None, gt=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_canary_p99_ratio: float | None = Field(default=None, gt=1)
    # A canary's device time per prediction may be at most this times its champion's (over
    # the same windows); None: cost is shown (`mlcp deployments`), not checked.
    max_canary_cost_ratio: float | None = Field(default=None, gt=0)
    max_baseline_p99_ratio: float = Field(default=2.0, gt=1)
    # Latency differences smaller than this never fail a comparison: at sub-millisecond
    # latencies, scheduling noise alone moves a p99 by a millisecond or two.
    min_p99_increase_ms: float = Field(default=5.0, ge=0)
    breach_windows: int = Field(default=3, ge=1)
    min_requests: int = Field(default=50, ge=1)
    baseline_windows: int = Field(default=20, ge=1)
    alpha: float = Field(default=0.001, gt=0, lt=0.5)


class Rollback(_Strict):
    """Guard rails on automatic rollbacks."""

    max_per_hour: int = Field(default=3, ge=0)  # per model; past it the controller holds
    on_breach: Literal["rollback", "alert"] = "rollback"  # production breach: act or only say


class Drift(_Strict):
    """Drift of a live version's inputs and predictions from its own reference.

    Every analysis window, each input feature and the predictions are compared with the
    version's reference (PSI, Jensen-Shannon, a chi-square test); a CUSUM per detector
    accumulates the evidence over windows, and its threshold is calibrated from the
    reference so that a version whose traffic is like its reference sees one false alarm per
    ``target_run_length`` windows (all its detectors together). A window counts towards
    drift only if its effect reaches the floor (``min_psi``, and ``min_js`` when set), so
    huge windows don't alarm on trivial shifts; windows under ``min_rows`` rows are not
    judged. ``k`` is the CUSUM's reference value, in standard-normal units: about half the
    per-window score of the smallest shift worth catching quickly.

    A canary whose inputs or outputs drift fails its analysis (``canary: true``). In
    production, confirmed drift does ``action``: ``alert`` (an audit event and a metric),
    ``rollback`` (to the previous good version) or ``rollback_to_best_match`` (the earlier
    good version whose training reference is closest to live traffic); with no healthy
    fallback the controller holds and says so.
    """

    enabled: bool = True
    action: Literal["alert", "rollback", "rollback_to_best_match"] = "alert"
    canary: bool = True
    predictions: bool = True
    # A false rollback is worse than none: at one analysis a minute, 100,000 windows is about
    # ten weeks between false alarms per model, and costs a 0.25 sd shift no extra window
    # at 500 rows a window (benchmarks/results/drift.json).
    target_run_length: int = Field(default=100_000, ge=10, le=10_000_000)
    min_psi: float = Field(default=0.05, ge=0)
    min_js: float | None = Field(default=None, gt=0, le=1)
    k: float = Field(default=1.0, gt=0, le=10)
    min_rows: int = Field(default=50, ge=10)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        # Policies stored before issue 11 said {psi_max, js_max, ks_pvalue_min,
        # consecutive_windows}: thresholds on one window. The maxima become the effect
        # floors; the sequential detector replaces the p-value and the run of windows.
        if isinstance(data, dict) and {"psi_max", "js_max", "ks_pvalue_min",
                                       "consecutive_windows"} & set(data):  # fmt: skip
            data = dict(data)
            if (psi_max := data.pop("psi_max", None)) is not None:
                data.setdefault("min_psi", psi_max)
            if (js_max := data.pop("js_max", None)) is not None:
                data.setdefault("min_js", js_max)
            data.pop("ks_pvalue_min", None)
            data.pop("consecutive_windows", None)
        return data


class CacheRule(_Strict):
    """A prediction cache per served version: answers kept ``ttl_s`` seconds, at most
    ``max_entries`` per version and replica (least recently used dropped first). With
    ``shared`` replicas also share answers through Redis (`mlcp serve --cache-redis-url`);
    a replica without one keeps its cache local and says so once."""

    ttl_s: float = Field(default=60.0, gt=0, le=86_400)
    max_entries: int = Field(default=10_000, ge=1, le=10_000_000)
    shared: bool | None = None  # None (not said): not shared; stored policies keep their sha256


class ClientRate(_Strict):
    """Each client may send ``rate_per_s`` requests a second to the model (``burst`` at once;
    0: one second's worth); over it, 429 with Retry-After. `mlcp serve --client-limit` wins
    for the clients it names."""

    rate_per_s: float = Field(gt=0, le=1_000_000)
    burst: float = Field(default=0.0, ge=0, le=1_000_000)


class Serving(_Strict):
    """How replicas serve the model (read when a version loads)."""

    cache: CacheRule | None = None  # None: no prediction cache
    limits: ClientRate | None = None  # None: the replica's (`mlcp serve --client-rate`)
    priority: Literal["critical", "normal", "batch"] = "normal"  # of requests naming none


class Policy(_Strict):
    """A model's promotion policy. ``Policy.from_yaml(text)`` validates; ``gates()`` builds them."""

    gates: Gates = Field(default_factory=Gates)
    approval: Approval = Field(default_factory=Approval)
    canary: Canary = Field(default_factory=Canary)
    slo: Slo = Field(default_factory=Slo)
    rollback: Rollback = Field(default_factory=Rollback)
    drift: Drift = Field(default_factory=Drift)
    # None (not {}): a policy that says nothing of serving keeps its body and sha256.
    serving: Serving | None = None

    @classmethod
    def from_yaml(cls, text: str, source: str = "policy") -> Policy:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidPolicy(
                source, "", f"not valid YAML: {' '.join(str(exc).split())}"
            ) from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidPolicy(
                source, "", "the top level must be a mapping (gates:, approval: ...)"
            )
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "policy") -> Policy:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidPolicy(source, _path(err["loc"]), str(err["msg"])) from None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def sha256(self) -> str:
        canonical = json.dumps(self.body(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def build_gates(self) -> list[Gate]:
        """The gates this policy names, in a fixed order."""
        from registry.gates import (
            ChampionComparisonGate,
            DataQualityGate,
            DriftReferenceGate,
            ExpectationSpec,
            LatencyBudgetGate,
            MetricThresholdGate,
            SchemaCompatibilityGate,
            TensorSpecDecl,
        )

        g = self.gates
        gates: list[Gate] = [MetricThresholdGate(m.metric, min=m.min, max=m.max) for m in g.metrics]
        gates += [
            ChampionComparisonGate(
                c.metric,
                direction=c.direction,
                max_drop=c.max_drop,
                max_relative_drop=c.max_relative_drop,
            )
            for c in g.champion
        ]
        if g.data_quality is not None:
            specs = [
                ExpectationSpec(e.type, e.kwargs, e.severity) for e in g.data_quality.expectations
            ]
            gates.append(DataQualityGate(specs, on=tuple(g.data_quality.datasets)))
        if g.schema_ is not None:
            decls = [TensorSpecDecl(t.dtype, tuple(t.shape), t.name) for t in g.schema_.inputs]
            gates.append(SchemaCompatibilityGate(decls))
        if g.latency is not None:
            lat = g.latency
            gates.append(
                LatencyBudgetGate(
                    lat.batch_sizes,
                    lat.p99_ms,
                    lat.p50_ms,
                    lat.iterations,
                    lat.rounds,
                    lat.machine_class,
                )
            )
        if g.drift_reference:
            gates.append(DriftReferenceGate())
        return gates


@dataclass(frozen=True)
class StoredPolicy:
    model_name: str
    revision: int
    sha256: str
    policy: Policy
    created_by: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "revision": self.revision,
            "sha256": self.sha256,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "policy": self.policy.body(),
        }


class PolicyStore:
    """Policies by model and revision; setting an unchanged policy adds no revision.

    The database is imported here, not at the top: `Policy` validates a file in a remote
    client (``MLCP_API_URL``), which must not pay for SQLAlchemy.
    """

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] | None = None
    ):
        from controlplane import audit

        self.sessions = sessions
        self.clock = clock or audit.utcnow

    def set(self, model_name: str, policy: Policy, actor: str) -> StoredPolicy:
        from controlplane import audit
        from controlplane.db.models import PolicyRow
        from registry import validate_model_name

        validate_model_name(model_name)
        if not policy.gates.named() and not policy.gates.none:
            raise InvalidPolicy(
                "policy",
                "gates",
                "it names no gate, so every version would pass; name gates, or say "
                "`gates: {none: true}` to promote without any",
            )
        if policy.gates.named() and policy.gates.none:
            raise InvalidPolicy("policy", "gates.none", "it names gates and says none: drop one")
        with self.sessions.begin() as session:
            current = self._latest(session, model_name)
            if current is not None and current.sha256 == policy.sha256():
                return _stored(current)
            revision = (current.revision if current else 0) + 1
            row = PolicyRow(
                model_name=model_name,
                revision=revision,
                body=policy.body(),
                sha256=policy.sha256(),
                created_by=actor,
                created_at=self.clock(),
            )
            session.add(row)
            audit.append(
                session,
                actor=actor,
                action="policy.set",
                subject=model_name,
                before={"revision": current.revision, "sha256": current.sha256}
                if current
                else None,
                after={"revision": revision, "sha256": row.sha256},
                reason="policy set",
                evidence={"policy": row.body},
                clock=self.clock,
            )
            session.flush()
            return _stored(row)

    def current(self, model_name: str) -> StoredPolicy:
        with self.sessions() as session:
            row = self._latest(session, model_name)
        if row is None:
            raise NoPolicy(model_name)
        return _stored(row)

    @staticmethod
    def _latest(session: Session, model_name: str) -> PolicyRow | None:
        from sqlalchemy import func, select

        from controlplane.db.models import PolicyRow

        top = (
            select(func.max(PolicyRow.revision))
            .where(PolicyRow.model_name == model_name)
            .scalar_subquery()
        )
        return session.execute(
            select(PolicyRow).where(PolicyRow.model_name == model_name, PolicyRow.revision == top)
        ).scalar_one_or_none()


def _stored(row: PolicyRow) -> StoredPolicy:
    return StoredPolicy(
        model_name=row.model_name,
        revision=row.revision,
        sha256=row.sha256,
        policy=Policy.from_dict(row.body),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
