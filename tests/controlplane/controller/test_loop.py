"""The controller loop on the real stores (SQLite control plane, MLflow): windows in, analyses
recorded, rollbacks and canary steps carried out with their audit rows and aliases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.controller import Controller, EventHub
from controlplane.controller.leader import FileLock
from controlplane.serving import DbWindowSink
from serving.windows import LATENCY_EDGES_S, Window
from tests.controlplane.test_promotion import W, World

POLICY = """
gates: {drift_reference: true}
canary: {steps: [10, 50], interval_s: 0.001, min_requests: 50, success_windows: 1}
slo: {max_error_rate: 0.01, p99_ms: 500, breach_windows: 2, min_requests: 50}
"""


@pytest.fixture
def world(cp: ControlPlane, model_name: str, tmp_path: Path) -> World:
    w = World(cp, model_name, tmp_path)
    w.policy(POLICY)
    return w


def report(cp: ControlPlane, name: str, version: int, requests: int, errors: int = 0) -> None:
    """Two replicas' windows of ``version``, starting now."""
    now = datetime.now(UTC)
    counts = [0] * (len(LATENCY_EDGES_S) + 1)
    counts[6] = requests  # ~5 ms
    windows = [
        Window(
            replica=replica,
            model=name,
            version=version,
            role="any",
            started_at=now,
            ended_at=now + timedelta(seconds=1),
            requests=requests,
            errors=errors,
            rejected=0,
            latency_sum_s=0.005 * requests,
            latency_counts=tuple(counts),
        )
        for replica in ("replica-a", "replica-b")
    ]
    DbWindowSink(cp.sessions).report(windows)


def controller(cp: ControlPlane, tmp_path: Path, **kwargs: object) -> Controller:
    return Controller(cp, lease=FileLock(tmp_path / "lock"), identity="controller@test", **kwargs)  # type: ignore[arg-type]


def entries(cp: ControlPlane, name: str, action: str) -> list[audit.AuditEntry]:
    with cp.sessions() as session:
        return audit.entries(session, subject=f"{name}@*", action=action)


def test_a_failing_canary_is_rolled_back_with_its_evidence(world: World, tmp_path: Path) -> None:
    cp, name = world.cp, world.name
    v1, v2 = world.register(W), world.register(W * 2)
    cp.promotions.promote(f"{name}@{v1}", "ci")
    cp.promotions.promote(f"{name}@{v2}", "ci", canary_percent=10)
    report(cp, name, v1, 900, errors=0)
    report(cp, name, v2, 100, errors=30)
    seen = []
    hub = EventHub()
    hub.subscribe(seen.append)
    [decision] = controller(cp, tmp_path, events=hub).tick()
    assert decision.action == "rollback"
    snap = cp.promotions.snapshot(name)
    assert (snap.champion, snap.challenger) == (v1, None)
    assert world.state(v2) == "rolled_back"
    assert world.aliases() == {"champion": v1}
    [row] = entries(cp, name, "model.rollback")
    assert row.subject == f"{name}@{v2}"
    assert row.actor == "controller@test"
    assert row.evidence is not None
    assert row.evidence["automatic"] is True
    assert "error_rate" in row.evidence["failed_checks"]
    canary = next(a for a in row.evidence["analyses"] if a["role"] == "challenger")
    assert canary["traffic"]["replicas"] == ["replica-a", "replica-b"]
    assert canary["traffic"]["failed"] == 60
    assert len(canary["traffic"]["windows"]) == 2
    assert {e.kind for e in seen} >= {"analysis", "decision", "canary_rollback"}
    lineage_actions = [e.action for e in entries(cp, name, "model.rollback")]
    assert lineage_actions == ["model.rollback"]


def test_a_healthy_canary_walks_its_steps_to_production(world: World, tmp_path: Path) -> None:
    cp, name = world.cp, world.name
    v1, v2 = world.register(W), world.register(W * 2)
    cp.promotions.promote(f"{name}@{v1}", "ci")
    cp.promotions.promote(f"{name}@{v2}", "ci", canary_percent=10)
    ctl = controller(cp, tmp_path)
    report(cp, name, v1, 900)
    report(cp, name, v2, 100)
    [step] = ctl.tick()
    assert (step.action, step.target) == ("advance", 50)
    assert cp.promotions.snapshot(name).canary_percent == 50
    report(cp, name, v1, 500)
    report(cp, name, v2, 500)
    [done] = ctl.tick()
    assert done.action == "promote"
    snap = cp.promotions.snapshot(name)
    assert (snap.champion, snap.challenger) == (v2, None)
    assert (world.state(v1), world.state(v2)) == ("retired", "production")
    assert world.aliases() == {"champion": v2}
    actions = [e.action for e in reversed(entries(cp, name, "model.canary_step"))]
    assert actions == ["model.canary_step"]


def test_windows_from_before_a_step_are_not_judged(world: World, tmp_path: Path) -> None:
    cp, name = world.cp, world.name
    v1, v2 = world.register(W), world.register(W * 2)
    cp.promotions.promote(f"{name}@{v1}", "ci")
    report(cp, name, v1, 900, errors=900)  # before the canary began: not its evidence
    cp.promotions.promote(f"{name}@{v2}", "ci", canary_percent=10)
    assert controller(cp, tmp_path).tick() == []


def test_a_confirmed_champion_breach_rolls_back_to_the_previous_good_version(
    world: World, tmp_path: Path
) -> None:
    cp, name = world.cp, world.name
    v1, v2 = world.register(W), world.register(W * 2)
    cp.promotions.promote(f"{name}@{v1}", "ci")
    cp.promotions.promote(f"{name}@{v2}", "ci")
    ctl = controller(cp, tmp_path)
    report(cp, name, v2, 300, errors=40)
    assert ctl.tick() == []  # one failed analysis: not confirmed yet
    report(cp, name, v2, 300, errors=40)
    [decision] = ctl.tick()
    assert (decision.action, decision.target) == ("rollback", v1)
    assert cp.promotions.snapshot(name).champion == v1
    assert (world.state(v1), world.state(v2)) == ("production", "rolled_back")
    assert world.aliases() == {"champion": v1}
    [restore] = entries(cp, name, "model.restore")
    assert restore.subject == f"{name}@{v1}"
    # v2 was rolled back: it is nobody's fallback, and with no other the controller holds.
    assert cp.rollouts.fallback(name) is None


def test_with_no_fallback_the_controller_holds_and_says_so_once(
    world: World, tmp_path: Path
) -> None:
    cp, name = world.cp, world.name
    v1 = world.register(W)
    cp.promotions.promote(f"{name}@{v1}", "ci")
    ctl = controller(cp, tmp_path)
    for _ in range(4):
        report(cp, name, v1, 300, errors=40)
        ctl.tick()
    [hold] = entries(cp, name, "controller.hold")
    assert "no healthy version to roll back to" in (hold.reason or "")
    assert cp.promotions.snapshot(name).champion == v1
    assert 'mlcp_controller_holding{model="' + name + '"} 1.0' in _metrics(ctl)


def test_dry_run_records_but_moves_nothing(world: World, tmp_path: Path) -> None:
    cp, name = world.cp, world.name
    v1, v2 = world.register(W), world.register(W * 2)
    cp.promotions.promote(f"{name}@{v1}", "ci")
    cp.promotions.promote(f"{name}@{v2}", "ci", canary_percent=10)
    report(cp, name, v1, 900)
    report(cp, name, v2, 100, errors=30)
    [decision] = controller(cp, tmp_path, dry_run=True).tick()
    assert decision.action == "rollback"
    assert cp.promotions.snapshot(name).challenger == v2
    assert entries(cp, name, "model.rollback") == []


def test_one_controller_leads_and_a_standby_takes_over(cp: ControlPlane, tmp_path: Path) -> None:
    first = Controller(cp, lease=FileLock(tmp_path / "lock"), identity="controller@one")
    second = Controller(cp, lease=FileLock(tmp_path / "lock"), identity="controller@two")
    assert first.lead()
    assert not second.lead()
    first.lease.release()  # what the kernel does when the process dies
    assert second.lead()
    second.lease.release()
    with cp.sessions() as session:
        leads = [e.actor for e in reversed(audit.entries(session, action="controller.lead"))]
    assert leads == ["controller@one", "controller@two"]


def _metrics(ctl: Controller) -> str:
    from prometheus_client import generate_latest

    return generate_latest(ctl.metrics.registry).decode()
