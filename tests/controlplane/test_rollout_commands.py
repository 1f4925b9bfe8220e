"""Rollbacks and canary controls by hand, from the CLI and the control API: no gates re-run,
audited as what they are, refused with a clear message when there is nothing to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controlplane import audit
from controlplane.api.app import create_app
from controlplane.cli import main
from controlplane.context import ControlPlane
from controlplane.serving import DbWindowSink
from controlplane.settings import Settings
from serving.windows import LATENCY_EDGES_S, Window
from tests.controlplane.test_promotion import W, World

POLICY = "gates: {drift_reference: true}\ncanary: {steps: [10, 40]}\n"


@pytest.fixture
def world(settings: Settings, model_name: str, tmp_path: Path) -> Iterator[World]:
    with ControlPlane(settings) as cp:
        w = World(cp, model_name, tmp_path)
        w.policy(POLICY)
        yield w


@pytest.fixture
def cli_env(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    s = world.cp.settings
    monkeypatch.setenv("MLCP_HOME", str(s.home))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", s.mlflow_tracking_uri)
    monkeypatch.setenv("MLCP_ARTIFACT_ROOT", s.artifact_root)
    monkeypatch.setenv("MLCP_ACTOR", "alice")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def promoted(world: World, *weights: float) -> list[int]:
    versions = [world.register(W * w) for w in weights]
    for v in versions:
        world.cp.promotions.promote(f"{world.name}@{v}", "ci")
    return versions


@pytest.mark.usefixtures("cli_env")
def test_rollback_returns_to_the_previous_champion_without_gates(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = promoted(world, 1, 2)
    code, out, err = run(capsys, "rollback", world.name, "--reason", "p99 doubled", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["before"]["champion"], result["after"]["champion"]) == (v2, v1)
    assert (world.state(v1), world.state(v2)) == ("production", "rolled_back")
    assert world.aliases() == {"champion": v1}
    with world.cp.sessions() as s:
        [row] = audit.entries(s, subject=f"{world.name}@{v2}", action="model.rollback")
        gates = audit.entries(s, subject=f"{world.name}@*", action="model.gates")
    assert (row.actor, row.reason) == ("alice", "p99 doubled")
    assert row.evidence is not None
    assert row.evidence["automatic"] is False
    assert len(gates) == 2  # the two promotions; the rollback ran none
    # Nothing left to roll back to: v1's predecessor is none, v2 was rolled back.
    code, _, err = run(capsys, "rollback", world.name, "--reason", "again")
    assert code == 2
    assert "no version to roll back to" in err
    assert "--to V" in err


@pytest.mark.usefixtures("cli_env")
def test_rollback_to_a_named_version_and_refusals(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2, v3 = promoted(world, 1, 2, 3)
    code, out, err = run(capsys, "rollback", world.name, "--to", str(v1), "--reason", "x")
    assert code == 0, err
    assert f"champion {v3} -> {v1}" in out
    assert world.state(v2) == "retired"  # still a good fallback
    code, _, err = run(capsys, "rollback", world.name, "--to", str(v3), "--reason", "x")
    assert code == 2
    assert "rolled_back" in err  # a rolled-back version is no fallback
    code, _, err = run(capsys, "rollback", world.name, "--to", "99", "--reason", "x")
    assert code == 2
    code, _, err = run(capsys, "rollback", world.name)
    assert code == 2
    assert "--reason" in err


@pytest.mark.usefixtures("cli_env")
def test_canary_pause_resume_abort(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    (v1,) = promoted(world, 1)
    v2 = world.register(W * 2)
    code, _, err = run(capsys, "promote", f"{world.name}@{v2}", "--canary")
    assert code == 0, err
    assert world.cp.promotions.snapshot(world.name).canary_percent == 10  # the first step
    assert run(capsys, "canary", "pause", world.name, "--reason", "looking")[0] == 0
    code, out, _ = run(capsys, "deployments", world.name, "--json")
    [view] = json.loads(out)
    assert view["challenger"]["paused"] is True
    assert view["challenger"]["steps"] == [10, 40]
    assert view["hold_reason"] == "looking"
    assert view["fallback"] is None
    assert run(capsys, "canary", "resume", world.name)[0] == 0
    code, out, _ = run(capsys, "canary", "abort", world.name, "--json")
    assert code == 0
    assert json.loads(out)["after"]["challenger"] is None
    assert world.state(v2) == "rolled_back"
    assert world.aliases() == {"champion": v1}
    code, _, err = run(capsys, "canary", "abort", world.name)
    assert code == 2
    assert "not running a canary" in err


@pytest.mark.usefixtures("cli_env")
def test_promote_to_canary_starts_at_the_first_step_and_to_elsewhere_is_refused(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    (v1,) = promoted(world, 1)
    v2 = world.register(W * 2)
    code, _, err = run(capsys, "promote", f"{world.name}@{v2}", "--to", "staging")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "'production', 'canary'" in err
    code, _, err = run(capsys, "promote", f"{world.name}@{v2}", "--to", "canary")
    assert code == 0, err
    snap = world.cp.promotions.snapshot(world.name)
    assert (snap.champion, snap.challenger, snap.canary_percent) == (v1, v2, 10)


@pytest.mark.usefixtures("cli_env")
def test_deployments_say_what_is_live(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "deployments")
    assert (code, out.strip()) == (0, "nothing is deployed yet; promote a version with "
                                      "`mlcp promote NAME@VERSION`")  # fmt: skip
    v1 = world.register(W)
    code, out, _ = run(capsys, "deployments", world.name)
    assert "registered but not deployed" in out
    world.cp.promotions.promote(f"{world.name}@{v1}", "ci")
    code, out, _ = run(capsys, "deployments")
    assert code == 0
    assert world.name in out
    assert "replicas: none reporting" in out
    code, _, err = run(capsys, "deployments", "no_such_model")
    assert code == 2
    assert "not registered" in err
    # Cost: the windows' device time over the predictions answered, at the configured price.
    now = datetime.now(UTC)
    window = Window(
        replica="r:1", model=world.name, version=v1, role="champion",
        started_at=now - timedelta(seconds=60), ended_at=now, requests=1000, errors=0,
        rejected=0, latency_sum_s=1.0, latency_counts=(0,) * (len(LATENCY_EDGES_S) + 1),
        compute_s=0.5, answered=2000, cached=400,
    )  # fmt: skip
    DbWindowSink(world.cp.sessions).report([window])
    monkeypatch.setenv("MLCP_DEVICE_HOUR_PRICE", "3.6")
    code, out, _ = run(capsys, "deployments", world.name, "--json")
    cost = json.loads(out)[0]["champion"]["cost"]
    assert (cost["predictions"], cost["device_ms_per_prediction"]) == (2000, 0.25)
    assert cost["per_1k"] == pytest.approx(0.00025)
    code, out, _ = run(capsys, "deployments", world.name)
    assert "0.00025 (0.25 device-ms/pred)" in out


def test_the_api_rolls_back_pauses_and_shows_deployments(world: World) -> None:
    v1, v2 = promoted(world, 1, 2)
    v3 = world.register(W * 3)
    promoter = world.cp.tokens.create("ci", "promoter", "admin")[1]
    viewer = world.cp.tokens.create("eyes", "viewer", "admin")[1]
    auth = {"Authorization": f"Bearer {promoter}"}
    with TestClient(create_app(world.cp)) as client:
        r = client.post(
            f"/v1/models/{world.name}/versions/{v3}/promote", json={"canary": True}, headers=auth
        )
        assert r.status_code == 200, r.text
        assert client.post(f"/v1/models/{world.name}/canary/pause", json={}, headers=auth).json()[
            "after"
        ]["paused"]
        shown = client.get(
            f"/v1/deployments/{world.name}", headers={"Authorization": f"Bearer {viewer}"}
        )
        assert shown.json()["challenger"]["version"] == v3
        refused = client.post(
            f"/v1/models/{world.name}/rollback",
            json={"reason": "x"},
            headers={"Authorization": f"Bearer {viewer}"},
        )
        assert refused.status_code == 403
        bad = client.post(f"/v1/models/{world.name}/rollback", json={}, headers=auth)
        assert bad.status_code == 422
        first = client.post(f"/v1/models/{world.name}/rollback", json={"reason": "x"}, headers=auth)
        assert first.json()["action"] == "canary_rollback"
        second = client.post(
            f"/v1/models/{world.name}/rollback", json={"reason": "y", "to": v1}, headers=auth
        )
        assert second.status_code == 200, second.text
        again = client.post(
            f"/v1/models/{world.name}/canary/abort", json={"reason": "z"}, headers=auth
        )
        assert again.status_code == 409
        assert "not running a canary" in again.json()["error"]["message"]
    assert world.cp.promotions.snapshot(world.name).champion == v1
    with world.cp.sessions() as s:
        actors = {
            e.actor for e in audit.entries(s, subject=f"{world.name}@*", action="model.rollback")
        }
    assert actors == {"token:ci"}
    assert world.state(v2) == "rolled_back"
