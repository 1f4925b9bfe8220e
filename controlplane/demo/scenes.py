"""The demo's live part: two replicas, a controller and traffic, then three scenes.

1. A better model walks through its canary steps to production.
2. A model as good but slower is caught during its canary and rolled back.
3. The live features shift (a new materialization) and the champion is rolled back on drift
   to the previous good version.

Every decision is the controller's own (`mlcp controller run`), read back from the audit
log as it happens; nothing here moves traffic but `mlcp promote --canary` and the
materialization. The summary and the report come from the audit log and the windows too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controlplane import audit
from controlplane.demo.setup import (
    BETTER,
    FEATURES,
    SLOWER,
    DemoResult,
    evaluate,
    make_churn_data,
    register,
)
from controlplane.demo.stage import MODEL, Stage, Traffic
from controlplane.deployments import deployments
from controlplane.jsonable import as_json

if TYPE_CHECKING:
    import pandas as pd

    from controlplane.context import ControlPlane
    from registry import ModelVersion

CUSTOMERS = 5500  # the training and evaluation populations: every one has features online
SCENE_TIMEOUT_S = 240.0


@dataclass
class Scene:
    """What one scene set out to show and what happened, with its timings."""

    title: str
    expected: str
    outcome: str = "did not finish"
    ok: bool = False
    onset_at: datetime | None = None  # when the change went live (canary) or landed (drift)
    decided_at: datetime | None = None  # the controller's decision (its audit row)
    converged_at: datetime | None = None  # both replicas route the new way
    evidence: list[str] = field(default_factory=list)

    def seconds(self, until: datetime | None) -> float | None:
        if self.onset_at is None or until is None:
            return None
        return (until - self.onset_at).total_seconds()


@dataclass
class Lifecycle:
    scenes: list[Scene]
    seconds: float
    versions: dict[str, int]
    answered: int
    statuses: dict[int, int]
    failures: int
    deployment: dict[str, Any] | None = None  # `mlcp deployments` as the scenes ended


class Narrator:
    """Prints the audit rows of the model as they land: what the controller did, and why."""

    def __init__(self, cp: ControlPlane, say: Callable[[str], None]) -> None:
        self.cp, self.say = cp, say
        with cp.sessions() as session:
            head = audit.entries(session, limit=1)
        self.seq = head[0].seq if head else 0

    def follow(self) -> list[audit.AuditEntry]:
        with self.cp.sessions() as session:
            rows = [e for e in audit.entries(session, subject=f"{MODEL}@*", limit=50)]
        new = sorted((e for e in rows if e.seq > self.seq), key=lambda e: e.seq)
        for entry in new:
            self.seq = entry.seq
            if entry.action in _SHOWN:
                self.say(f"   {audit.as_utc(entry.ts):%H:%M:%S} {_line(entry)}")
        return new


_SHOWN = {
    "model.canary": "canary",
    "model.canary_step": "canary step",
    "model.promote": "promoted",
    "model.retire": "retired",
    "model.rollback": "ROLLED BACK",
    "model.restore": "restored",
    "model.reject": "refused",
    "controller.hold": "held",
    "controller.alert": "alert",
}


def _line(entry: audit.AuditEntry) -> str:
    who = "controller" if entry.actor.startswith("controller@") else entry.actor
    after = entry.after or {}
    weight = f" at {after['canary_percent']}%" if after.get("canary_percent") else ""
    reason = " ".join((entry.reason or "").split())
    if len(reason) > 150:
        reason = reason[:147] + "..."
    return f"{entry.subject} {_SHOWN[entry.action]}{weight} by {who}: {reason}"


def run_lifecycle(
    cp: ControlPlane,
    setup: DemoResult,
    say: Callable[[str], None],
    progress: Callable[[str], None],
    fast: bool = False,
) -> Lifecycle:
    """Register the scenes' versions, start the deployment and traffic, play the scenes."""
    started = time.monotonic()
    assert setup.train_set is not None
    assert setup.eval_path is not None
    baseline = setup.version
    run = _run_suffix(cp)
    better, _ = register(cp, setup.train_set, setup.train_path, BETTER, progress, run)
    slower, _ = register(cp, setup.train_set, setup.train_path, SLOWER, progress, run)
    for version in (better, slower):
        evaluate(cp, version, setup.eval_path, progress)
    source = _reset_features(cp, progress)
    _start_from(cp, baseline, progress)
    interval = 0.5 if fast else 1.0
    logs = cp.settings.home / "demo" / "logs"
    say("")
    say(f"== live: two `mlcp serve` replicas and `mlcp controller run` (logs in {logs})")
    scenes: list[Scene] = []
    with Stage(cp.settings, logs, window_s=interval, interval_s=interval) as stage:
        stage.wait(lambda: stage.serves(baseline.version), f"{baseline.ref} on both replicas")
        with Traffic(stage.urls, CUSTOMERS, threads=6) as traffic:
            say(f"   traffic: entity requests for {CUSTOMERS} customers, to both replicas")
            _wait_for_baseline(cp, stage, baseline.version)
            narrator = Narrator(cp, say)
            scenes.append(_canary_walk(cp, stage, traffic, narrator, say, baseline, better))
            if scenes[-1].ok:
                scenes.append(_slow_canary(cp, stage, traffic, narrator, say, better, slower))
                scenes.append(_drift(cp, stage, narrator, say, better, baseline, source))
            narrator.follow()
        answered, statuses, failures = traffic.answered, dict(traffic.statuses), traffic.failures
        deployment = next(iter(as_json(deployments(cp, MODEL))), None)
    return Lifecycle(
        scenes=scenes,
        seconds=time.monotonic() - started,
        versions={
            "baseline": baseline.version,
            "better": better.version,
            "slower": slower.version,
        },
        answered=answered,
        statuses=statuses,
        failures=len(failures),
        deployment=deployment,
    )


def _run_suffix(cp: ControlPlane) -> str:
    """Each demo run registers its own scene versions: a version the controller rolled back
    is never promoted again automatically, so a second run needs fresh ones."""
    runs = sum(1 for v in cp.registry.versions(MODEL) if v.params.get("burn") not in (None, "0"))
    return f"-run{runs + 1}" if runs else ""


def _reset_features(cp: ControlPlane, progress: Callable[[str], None]) -> pd.DataFrame:
    """Materialize the customers' usual values now (an earlier run may have left shifted
    ones online); returns the feature source with them."""
    import pandas as pd

    path = cp.settings.home / "demo" / "customer_stats.parquet"
    usual = _population().assign(event_timestamp=pd.Timestamp(datetime.now(UTC)))
    _materialize(cp, path, usual, progress, "the customers' usual feature values")
    return usual


def _population() -> pd.DataFrame:
    import pandas as pd

    from controlplane.demo.setup import SEED

    train = make_churn_data().assign(customer_id=np.arange(4000))
    held = make_churn_data(rows=1500, seed=SEED + 1).assign(customer_id=np.arange(4000, 5500))
    both = pd.concat([train, held], ignore_index=True)
    return both[["customer_id", *FEATURES]]


def _materialize(
    cp: ControlPlane,
    path: Path,
    rows: pd.DataFrame,
    progress: Callable[[str], None],
    what: str,
) -> None:
    import pandas as pd

    history = pd.read_parquet(path)
    pd.concat([history, rows], ignore_index=True).to_parquet(path, index=False)
    at = rows["event_timestamp"].iloc[0].to_pydatetime()
    progress(f"materializing {what}")
    cp.features.materialize(  # the latest value of each customer in the window wins
        "customer_stats@1", at - timedelta(minutes=1), at + timedelta(minutes=1),
        cp.settings.actor, progress,
    )  # fmt: skip


def _start_from(cp: ControlPlane, baseline: ModelVersion, progress: Callable[[str], None]) -> None:
    """The scenes start with the baseline as the only live version."""
    snap = cp.promotions.snapshot(MODEL)
    if snap.challenger is not None:
        cp.rollouts.abort(MODEL, actor=cp.settings.actor, reason="demo: start from the baseline")
    if snap.champion not in (None, baseline.version):
        progress(f"returning to {baseline.ref}, where the demo's scenes begin")
        cp.rollouts.rollback(
            MODEL, actor=cp.settings.actor, reason="demo: start from the baseline",
            to=baseline.version,
        )  # fmt: skip


def _wait_for_baseline(cp: ControlPlane, stage: Stage, champion: int) -> None:
    """A few analyses of the champion first: its own baseline, and drift detectors at rest."""
    from controlplane.db.models import AnalysisRow

    def analysed() -> bool:
        with cp.sessions() as session:
            count = (
                session.query(AnalysisRow)
                .filter(AnalysisRow.model_name == MODEL, AnalysisRow.version == champion)
                .count()
            )
        return count >= 5

    stage.wait(analysed, "the controller's first analyses of the champion")


def _start_canary(
    cp: ControlPlane,
    stage: Stage,
    traffic: Traffic,
    narrator: Narrator,
    say: Callable[[str], None],
    scene: Scene,
    version: ModelVersion,
) -> Any:
    """`mlcp promote REF --canary`, as CI runs it; the promotion's result once a replica
    serves the canary (the scene's onset), or None when the gates refused it. The gates
    measure latency on this machine, which the demo's own replicas and traffic share, so
    traffic pauses while they run (CI would run them on a machine of its own)."""
    say(f"   mlcp promote {version.ref} --canary      (traffic paused while the gates run)")
    with traffic.paused():
        result = cp.promotions.promote(version.ref, cp.settings.actor, canary=True)
    narrator.follow()
    if result.outcome != "canary":
        scene.outcome = f"{result.outcome}: {result.reason}"
        say(f"   {version.ref}: {scene.outcome}")
        return None
    scene.onset_at = _when(stage, lambda: _any_challenger(stage, version.version))
    return result


def _canary_walk(
    cp: ControlPlane,
    stage: Stage,
    traffic: Traffic,
    narrator: Narrator,
    say: Callable[[str], None],
    champion: ModelVersion,
    better: ModelVersion,
) -> Scene:
    scene = Scene("a better model walks its canary steps", "promoted by the controller")
    say("")
    say(f"== scene 1: {better.ref}, better than {champion.ref}, walks its canary to production")
    if _start_canary(cp, stage, traffic, narrator, say, scene, better) is None:
        return scene
    decided = ("production", "rolled_back")
    _watch(stage, narrator, lambda: cp.registry.get(better.ref).state in decided)
    state = cp.registry.get(better.ref).state
    scene.decided_at = _last_at(cp, better.ref, "model.promote")
    if state == "production":
        scene.converged_at = _when(stage, lambda: stage.serves(better.version))
        scene.ok, scene.outcome = True, f"promoted by the controller ({champion.ref} retired)"
    else:
        scene.outcome = f"{better.ref} is {state}"
    return scene


def _slow_canary(
    cp: ControlPlane,
    stage: Stage,
    traffic: Traffic,
    narrator: Narrator,
    say: Callable[[str], None],
    champion: ModelVersion,
    slower: ModelVersion,
) -> Scene:
    scene = Scene("a slower model is caught during its canary", "rolled back by the controller")
    say("")
    say(f"== scene 2: {slower.ref}, as good as {champion.ref} but slower per batch, as a canary")
    result = _start_canary(cp, stage, traffic, narrator, say, scene, slower)
    if result is None:
        return scene
    latency = next((g for g in result.report.results if g.gate == "latency"), None)
    passed = (
        f" (offline latency gate: {latency.observed} ms, {latency.threshold})" if latency else ""
    )
    say(f"   gates passed{passed}")
    _watch(stage, narrator, lambda: cp.registry.get(slower.ref).state != "canary")
    return _judged_rollback(cp, stage, scene, slower, champion.version)


def _drift(
    cp: ControlPlane,
    stage: Stage,
    narrator: Narrator,
    say: Callable[[str], None],
    champion: ModelVersion,
    fallback: ModelVersion,
    usual: pd.DataFrame,
) -> Scene:
    import pandas as pd

    scene = Scene("live features drift", f"rolled back on drift to {fallback.ref}")
    say("")
    say("== scene 3: prices rise and customers call support more: the live features shift")
    shifted = usual.assign(
        monthly_charges=(usual["monthly_charges"] + 25.0).astype(np.float32),
        support_calls=(usual["support_calls"] + 1.0).astype(np.float32),
        event_timestamp=pd.Timestamp(datetime.now(UTC)),
    )
    path = cp.settings.home / "demo" / "customer_stats.parquet"
    say("   mlcp features materialize customer_stats@1 (monthly_charges +25, support_calls +1)")
    _materialize(cp, path, shifted, lambda _m: None, "the shifted values")
    scene.onset_at = datetime.now(UTC)
    _watch(stage, narrator, lambda: cp.registry.get(champion.ref).state != "production")
    return _judged_rollback(cp, stage, scene, champion, fallback.version)


def _judged_rollback(
    cp: ControlPlane, stage: Stage, scene: Scene, version: ModelVersion, champion: int
) -> Scene:
    with cp.sessions() as session:
        rows = audit.entries(session, subject=version.ref, action="model.rollback", limit=1)
    if not rows or not (rows[0].evidence or {}).get("automatic"):
        scene.outcome = f"{version.ref} is {cp.registry.get(version.ref).state}"
        return scene
    row = rows[0]
    scene.decided_at = audit.as_utc(row.ts)
    scene.converged_at = _when(stage, lambda: stage.serves(champion))
    scene.ok = True
    scene.outcome = f"rolled back by the controller; both replicas serve {MODEL}@{champion}"
    scene.evidence = _evidence(row.evidence or {})
    return scene


def _evidence(evidence: Mapping[str, Any]) -> list[str]:
    """The failed checks, as people read them."""
    lines = []
    for analysis in evidence.get("analyses", []):
        for check in analysis.get("checks", []):
            if check.get("verdict") == "fail":
                lines.append(
                    f"{MODEL}@{analysis['version']} {check['check']}: observed "
                    f"{check.get('observed')}, needs {check.get('threshold')}"
                )
    drift = evidence.get("drift") or {}
    if drift.get("drifting"):
        lines.append(f"drifting: {', '.join(drift['drifting'])}")
    return lines


def _watch(stage: Stage, narrator: Narrator, done: Callable[[], bool]) -> None:
    def step() -> bool:
        narrator.follow()
        return done()

    stage.wait(step, "the controller's decision", SCENE_TIMEOUT_S)
    narrator.follow()  # the rows that came with the decision


def _when(stage: Stage, condition: Callable[[], bool]) -> datetime:
    stage.wait(condition, "the replicas to follow", 60)
    return datetime.now(UTC)


def _any_challenger(stage: Stage, version: int) -> bool:
    return any(stage.serving(r).get("challenger") == version for r in stage.replicas)


def _last_at(cp: ControlPlane, ref: str, action: str) -> datetime | None:
    with cp.sessions() as session:
        rows = audit.entries(session, subject=ref, action=action, limit=1)
    return audit.as_utc(rows[0].ts) if rows else None
