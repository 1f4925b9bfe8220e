"""The rollback controller end to end: two real `mlcp serve` replicas and two `mlcp controller
run` processes (one active, one standby) on loopback, load running throughout, on SQLite and
on PostgreSQL. Every request sent gets an answer, and no answer is a 5xx caused by a swap:
the only 5xx are a failing version's own.

One deployment per backend (module) serves every scenario, each on a model of its own.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.policy import Policy
from controlplane.settings import Settings
from registry import RegistrationRequest
from tests.controlplane.controller.cluster import (
    MODELS,
    WIDTH,
    Cluster,
    Load,
    Process,
    policy_yaml,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# model name -> the versions it registers (in order: v1, v2, ...) and its policy overrides
SCENARIOS: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "slow_canary": (("good", "slow"), {}),
    "failing_canary": (("good", "failing"), {}),
    "good_canary": (("good", "good"), {"canary": {"min_requests": 10}}),
    "fragile_champion": (("good", "fragile"), {}),
    "quiet_canary": (
        ("good", "good"),
        {"canary": {"min_requests": 100_000, "inconclusive_limit": 3}},
    ),
    "failover": (("good", "failing"), {}),
}


@dataclass
class World:
    cluster: Cluster
    cp: ControlPlane
    replicas: list[Process]
    controllers: list[Process]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def converged(self, name: str, champion: int, challenger: int | None) -> bool:
        return all(self.cluster.serves(r, name, champion, challenger) for r in self.replicas)

    def entries(self, name: str, action: str) -> list[audit.AuditEntry]:
        with self.cp.sessions() as session:
            return audit.entries(session, subject=f"{name}@*", action=action)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    home = tmp_path_factory.mktemp(f"rollback-{request.param}")
    values: dict[str, str] = {"home": str(home / ".mlcp"), "actor": "ci"}
    if request.param == "postgresql":
        values["database_url"] = request.getfixturevalue("pg_database")()
        values["mlflow_tracking_uri"] = request.getfixturevalue("pg_mlflow_uri")
        values["artifact_root"] = (home / "artifacts").as_uri()
    env = {**os.environ, **{f"MLCP_{k.upper()}": v for k, v in values.items()}}
    cp = ControlPlane(Settings(**values))  # type: ignore[arg-type]
    cluster = Cluster(home, env)
    try:
        x = np.random.default_rng(0).random((6, WIDTH), dtype=np.float32) * 0.5
        for name, (kinds, overrides) in SCENARIOS.items():
            for seed, kind in enumerate(kinds, start=1):
                cp.registry.register(
                    RegistrationRequest(name=name, model=MODELS[kind](seed), input_example=x)
                )
            cp.policies.set(name, Policy.from_yaml(policy_yaml(**overrides)), "admin")
            assert cp.promotions.promote(f"{name}@1", "ci").outcome == "promoted"
        replicas = [cluster.serve("replica-a"), cluster.serve("replica-b")]
        for replica in replicas:
            cluster.wait_ready(replica)
        world = World(cluster, cp, replicas, [])
        for name in SCENARIOS:
            wait_until(lambda name=name: world.converged(name, 1, None), what=f"{name}@1 served")
        world.controllers.append(cluster.controller("controller-1"))
        wait_until(lambda: _leads(cp) >= 1, what="the first controller to lead")
        world.controllers.append(cluster.controller("controller-2"))  # the standby
        yield world
    finally:
        cluster.stop()
        cp.close()
    for replica in replicas:
        assert replica.popen.returncode == 0, replica.tail()


def _leads(cp: ControlPlane) -> int:
    with cp.sessions() as session:
        return len(audit.entries(session, action="controller.lead"))


def canary(world: World, name: str) -> None:
    result = world.cp.promotions.promote(f"{name}@2", "ci", canary=True)
    assert result.outcome == "canary", result.to_dict()


def assert_every_request_answered(load: Load, failing_version: str | None = None) -> None:
    assert not load.failures, load.failures[:5]
    assert load.count() == load.sent - len(load.failures)
    for answer in load.answers:
        if answer.status == 200:
            continue
        # The only 5xx allowed: the failing version's own failures, never a swap's.
        assert answer.status == 500, (answer.status, answer.error)
        assert failing_version is not None, answer.error
        assert f"@{failing_version} failed on this request" in (answer.error or ""), answer.error


def test_a_slow_canary_is_rolled_back_and_both_replicas_serve_the_champion(world: World) -> None:
    name = "slow_canary"
    with Load(world.urls, name) as load:
        wait_until(lambda: load.count() > 50, what="traffic")
        canary(world, name)
        wait_until(lambda: world.entries(name, "model.rollback"), what="the rollback")
        wait_until(lambda: world.converged(name, 1, None), what="both replicas on the champion")
    assert_every_request_answered(load)
    [rollback] = world.entries(name, "model.rollback")
    assert rollback.subject == f"{name}@2"
    assert rollback.evidence is not None
    assert "p99_vs_champion" in rollback.evidence["failed_checks"]
    assert world.cp.registry.get(f"{name}@2").state == "rolled_back"


def test_a_canary_that_fails_requests_is_rolled_back(world: World) -> None:
    name = "failing_canary"
    with Load(world.urls, name) as load:
        wait_until(lambda: load.count() > 50, what="traffic")
        canary(world, name)
        wait_until(lambda: world.entries(name, "model.rollback"), what="the rollback")
        wait_until(lambda: world.converged(name, 1, None), what="both replicas on the champion")
        settled = load.count()
        wait_until(lambda: load.count() > settled + 100, what="traffic after the rollback")
    assert_every_request_answered(load, failing_version="2")
    assert all(a.status == 200 for a in load.answers[settled:])
    [rollback] = world.entries(name, "model.rollback")
    assert rollback.evidence is not None
    # Either error check may be the first to confirm: the absolute ceiling or the comparison
    # with the champion (both read the same failing requests).
    failed = set(rollback.evidence["failed_checks"])
    assert failed & {"error_rate", "error_rate_vs_champion"}, failed
    assert failed <= {"error_rate", "error_rate_vs_champion"}, failed
    replicas = {r for a in rollback.evidence["analyses"] for r in a["traffic"]["replicas"]}
    assert replicas <= {"replica-a", "replica-b"}
    assert replicas


def test_a_good_canary_walks_its_steps_and_becomes_production(world: World) -> None:
    name = "good_canary"
    with Load(world.urls, name) as load:
        wait_until(lambda: load.count() > 50, what="traffic")
        canary(world, name)
        wait_until(lambda: world.cp.registry.get(f"{name}@2").state == "production",
                   what="the canary's promotion")  # fmt: skip
        wait_until(lambda: world.converged(name, 2, None), what="both replicas on v2")
    assert_every_request_answered(load)
    steps = world.entries(name, "model.canary_step")
    assert [e.after["canary_percent"] for e in reversed(steps)] == [50]  # type: ignore[index]
    promoted = world.entries(name, "model.promote")[0]
    assert promoted.actor.startswith("controller@")
    assert world.cp.registry.get(f"{name}@1").state == "retired"
    assert {a.version for a in load.answers} == {"1", "2"}


def test_a_champion_that_starts_failing_is_rolled_back_to_the_previous_good_version(
    world: World,
) -> None:
    name = "fragile_champion"
    assert world.cp.promotions.promote(f"{name}@2", "ci").outcome == "promoted"
    wait_until(lambda: world.converged(name, 2, None), what="v2 in production")
    with Load(world.urls, name) as load:
        wait_until(lambda: load.count() > 300, what="healthy traffic")
        load.poison(150.0, 200.0)  # inputs v2 can't take; v1 can
        wait_until(lambda: world.entries(name, "model.rollback"), what="the rollback")
        wait_until(lambda: world.converged(name, 1, None), what="both replicas back on v1")
        settled = load.count()
        wait_until(lambda: load.count() > settled + 100, what="traffic after the rollback")
    assert_every_request_answered(load, failing_version="2")
    assert all(a.status == 200 and a.version == "1" for a in load.answers[settled:])
    [rollback] = world.entries(name, "model.rollback")
    assert rollback.evidence is not None
    assert rollback.evidence["rolled_back_to"] == 1
    assert world.cp.registry.get(f"{name}@1").state == "production"


def test_a_canary_with_too_little_traffic_holds_and_is_not_promoted(world: World) -> None:
    name = "quiet_canary"
    with Load(world.urls, name, threads=1, pause_s=0.05) as load:
        canary(world, name)
        [hold] = wait_until(lambda: world.entries(name, "controller.hold"), what="the hold")
    assert_every_request_answered(load)
    assert "too little traffic" in (hold.reason or "")
    snap = world.cp.promotions.snapshot(name)
    assert (snap.champion, snap.challenger) == (1, 2)
    assert world.entries(name, "model.promote")[0].subject == f"{name}@1"


def test_killing_the_active_controller_hands_over_to_the_standby(world: World) -> None:
    name = "failover"
    active = world.controllers[0]
    active.stop(signal.SIGKILL)
    with Load(world.urls, name) as load:
        wait_until(lambda: load.count() > 50, what="traffic")
        canary(world, name)
        [rollback] = wait_until(lambda: world.entries(name, "model.rollback"), what="a rollback")
        wait_until(lambda: world.converged(name, 1, None), what="both replicas on the champion")
    assert_every_request_answered(load, failing_version="2")
    standby = world.controllers[1]
    assert rollback.actor.endswith(f":{standby.popen.pid}")
    with world.cp.sessions() as session:
        leads = [e.actor for e in audit.entries(session, action="controller.lead")]
    assert leads[0].endswith(f":{standby.popen.pid}")


def test_deployments_show_what_every_replica_serves(world: World) -> None:
    from controlplane.deployments import deployments

    [view] = deployments(world.cp, "good_canary")
    assert view["champion"]["version"] == 2
    assert view["converged"]
    assert {r["replica"] for r in view["replicas"]} == {"replica-a", "replica-b"}
