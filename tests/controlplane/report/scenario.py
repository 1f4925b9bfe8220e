"""A model's life on the real stores, cheaply: versions registered, evaluated and gated; two
replicas' windows written straight to the database; the real controller judging them. No
servers: the windows are what `mlcp serve` would report, on a clock the test moves.

    story = Story(cp_with_clock, "churn", tmp_path)
    story.play()            # v1 serves; v2 canaries to production; v3's canary is rolled back
                            # for latency; a shift in feature a rolls v2 back to v1 on drift

Every change of who serves goes through the controller (or the promotion service), so the
audit log, analyses and drift statistics are the ones production would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np

from controlplane.context import ControlPlane
from controlplane.controller import Controller
from controlplane.controller.leader import FileLock
from controlplane.serving import DbWindowSink
from controlplane.settings import Settings
from features.reference import bin_index
from serving.windows import LATENCY_EDGES_S, Sketch, Window
from tests.controlplane.test_promotion import FEATURES, W, World

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WINDOW_S = 10.0
REQUESTS = 400  # per replica and window: 80 requests a second over two replicas
REPLICAS = ("replica-a", "replica-b")
POLICY = """
gates:
  metrics: [{metric: roc_auc, min: 0.7}]
  champion: [{metric: roc_auc, direction: higher, max_drop: 0.01}]
  drift_reference: true
canary: {steps: [10, 50], interval_s: 1, min_requests: 50, success_windows: 2}
slo: {max_error_rate: 0.01, p99_ms: 100, breach_windows: 2, min_requests: 50}
drift: {action: rollback, target_run_length: 100000, min_rows: 20}
"""


class Clock:
    """Time as the test sets it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ClockedControlPlane(ControlPlane):
    """A control plane whose promotions and rollouts read ``clock`` (their audit rows and
    canary steps land on the story's timeline)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        super().__init__(settings)
        self.clock = clock

    @cached_property
    def promotions(self):  # type: ignore[no-untyped-def]
        from controlplane.promotion import PromotionService

        return PromotionService(
            self.sessions, self.registry, self.policies, self.evaluations, clock=self.clock
        )

    @cached_property
    def rollouts(self):  # type: ignore[no-untyped-def]
        from controlplane.rollout import RolloutService

        return RolloutService(self.sessions, self.registry, clock=self.clock)


@dataclass
class Behaviour:
    """How a version answers: latency (ms, lognormal around the median) and failures."""

    median_ms: float = 4.0
    sigma: float = 0.45
    error_rate: float = 0.001


@dataclass
class Story:
    cp: ClockedControlPlane
    name: str
    root: Path
    seed: int = 7
    versions: dict[int, np.ndarray] = field(default_factory=dict)
    behaviour: dict[int, Behaviour] = field(default_factory=dict)
    shift: float = 0.0  # added to feature a of live traffic

    def __post_init__(self) -> None:
        self.world = World(self.cp, self.name, self.root)
        self.world.policy(POLICY)
        self.rng = np.random.default_rng(self.seed)
        self.sink = DbWindowSink(self.cp.sessions, clock=self.cp.clock)
        self.controller = Controller(
            self.cp, lease=FileLock(self.root / "controller.lock"),
            identity="controller@report-test", clock=self.cp.clock,
        )  # fmt: skip

    # -- the scenes ----------------------------------------------------------------------------
    def play(self) -> None:
        v1 = self.register(W)
        self.promote(v1)
        self.serve(6)
        v2 = self.register(W * 2)
        self.promote(v2, canary=True)
        self.serve_until(lambda: self.snapshot().challenger is None, most=10)
        self.serve(3)
        v3 = self.register(W * 3, Behaviour(median_ms=180.0, sigma=0.35))
        self.promote(v3, canary=True)
        self.serve_until(lambda: self.snapshot().challenger is None, most=6)
        self.serve(3)
        self.shift = 0.3
        self.serve_until(lambda: self.snapshot().champion != v2, most=8)
        self.serve(2)

    def register(self, weights: np.ndarray, behaviour: Behaviour | None = None) -> int:
        version = self.world.register(weights)
        self.world.evaluate(version)
        self.versions[version] = weights
        self.behaviour[version] = behaviour or Behaviour()
        if self.snapshot().champion is not None:
            self.serve(2)  # traffic goes on while CI registers and evaluates
        return version

    def promote(self, version: int, canary: bool = False) -> None:
        result = self.cp.promotions.promote(f"{self.name}@{version}", "ci", canary=canary)
        assert result.accepted, result.to_dict()

    def snapshot(self):  # type: ignore[no-untyped-def]
        return self.cp.promotions.snapshot(self.name)

    def serve(self, windows: int) -> None:
        for _ in range(windows):
            self.window()

    def serve_until(self, done, most: int) -> None:  # type: ignore[no-untyped-def]
        for _ in range(most):
            self.window()
            if done():
                return
        raise AssertionError(f"not done after {most} windows: {self.snapshot()}")

    # -- one window of both replicas, then the controller's tick ---------------------------------
    def window(self) -> None:
        snap = self.snapshot()
        split = {snap.champion: 100 - (snap.canary_percent or 0)}
        if snap.challenger is not None:
            split[snap.challenger] = snap.canary_percent
        started = self.cp.clock()
        ended = started + timedelta(seconds=WINDOW_S)
        windows = []
        for replica in REPLICAS:
            for version, percent in split.items():
                role = "champion" if version == snap.champion else "challenger"
                requests = int(self.rng.binomial(REQUESTS, percent / 100))
                windows.append(self._window(replica, version, role, requests, started, ended))
        self.cp.clock.advance(WINDOW_S)
        self.sink.report(windows)
        self.controller.tick()

    def _window(
        self, replica: str, version: int, role: str, requests: int, started: datetime,
        ended: datetime,
    ) -> Window:  # fmt: skip
        how = self.behaviour[version]
        latency_s = self.rng.lognormal(np.log(how.median_ms / 1000), how.sigma, requests)
        counts = np.bincount(
            np.searchsorted(LATENCY_EDGES_S, latency_s, side="left"),
            minlength=len(LATENCY_EDGES_S) + 1,
        )
        rows = self.world.train[FEATURES].sample(
            min(requests, 300), replace=True, random_state=int(self.rng.integers(1 << 31))
        )
        rows = rows.assign(a=rows["a"] + self.shift).to_numpy(np.float64)
        reference = self.cp.registry.get(f"{self.name}@{version}")
        features = {
            name: _sketch(rows[:, i], _edges((reference.reference_stats or {}), name))
            for i, name in enumerate(FEATURES)
        }
        output = (reference.prediction_reference or {}).get("output") or {}
        predictions = rows @ self.versions[version].astype(np.float64)
        return Window(
            replica=replica, model=self.name, version=version, role=role,
            started_at=started, ended_at=ended, requests=requests,
            errors=int(self.rng.binomial(requests, how.error_rate)), rejected=0,
            latency_sum_s=float(latency_s.sum()), latency_counts=tuple(int(c) for c in counts),
            features=features,
            predictions=_sketch(predictions, tuple(output.get("histogram", {}).get("edges", ()))),
        )  # fmt: skip


def _edges(reference: dict, name: str) -> tuple[float, ...]:  # type: ignore[type-arg]
    histogram = reference.get("features", {}).get(name, {}).get("histogram") or {}
    return tuple(float(e) for e in histogram.get("edges", ()))


def _sketch(values: np.ndarray, edges: tuple[float, ...]) -> Sketch:
    counts = np.bincount(bin_index(values, edges), minlength=max(len(edges) - 1, 0))
    return Sketch(
        count=len(values), nulls=0, total=float(values.sum()),
        total_sq=float((values * values).sum()),
        minimum=float(values.min()) if len(values) else None,
        maximum=float(values.max()) if len(values) else None,
        edges=edges, counts=tuple(int(c) for c in counts[: max(len(edges) - 1, 0)]),
    )  # fmt: skip
