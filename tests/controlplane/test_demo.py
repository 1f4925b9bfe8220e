"""`mlcp demo --fast` end to end, as `make demo` runs it: the three scenes end as they should.

The outcomes are read from the audit log (who decided, on what evidence), not from the
printed narration; the run is shared by the module's tests (it costs a few minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MLCP = str(Path(sys.executable).with_name("mlcp"))


Run = tuple[Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    done = subprocess.run(
        [MLCP, "demo", "--fast"], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    return work, done


@pytest.fixture(scope="module")
def cp(demo: Run) -> Iterator[ControlPlane]:
    work, done = demo
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-2000:])
    with ControlPlane(Settings(home=work / ".mlcp", actor="test")) as plane:
        yield plane


def rows(cp: ControlPlane, subject: str, action: str) -> list[audit.AuditEntry]:
    with cp.sessions() as session:
        return audit.entries(session, subject=subject, action=action)


def by_controller(entry: audit.AuditEntry) -> bool:
    return entry.actor.startswith("controller@") and bool((entry.evidence or {}).get("automatic"))


def failed_checks(entry: audit.AuditEntry) -> set[str]:
    return set((entry.evidence or {}).get("failed_checks", []))


def test_set_up_registers_with_lineage_and_the_gates_decide(cp: ControlPlane) -> None:
    states = {v.version: v.state for v in cp.registry.versions("churn")}
    assert states[2] == "rejected"  # the weak model: behind the champion on the same rows
    (refusal,) = rows(cp, "churn@2", "model.gates")
    assert not refusal.after["passed"]
    baseline = cp.registry.get("churn@1")
    assert baseline.feature_service == "churn_features@1"
    assert baseline.training_data is not None
    assert baseline.training_data.fingerprint
    assert baseline.reference_stats


def test_scene_1_the_better_model_walks_its_canary_to_production(cp: ControlPlane) -> None:
    (canary,) = rows(cp, "churn@3", "model.canary")
    assert not canary.actor.startswith("controller@")  # CI (the demo) asked for the canary
    steps = rows(cp, "churn@3", "model.canary_step")
    assert steps
    assert all(by_controller(s) for s in steps)
    (promotion,) = rows(cp, "churn@3", "model.promote")
    assert by_controller(promotion)
    assert promotion.evidence["decision"]["action"] == "promote"
    assert steps[0].seq < promotion.seq


def test_scene_2_the_slower_canary_is_rolled_back_on_latency(cp: ControlPlane) -> None:
    (gates,) = rows(cp, "churn@4", "model.gates")
    assert gates.after["passed"]  # the offline gates let it through to its canary
    (rollback,) = rows(cp, "churn@4", "model.rollback")
    assert by_controller(rollback)
    assert failed_checks(rollback) & {"p99_ms", "p99_vs_champion"}, rollback.evidence
    assert rollback.after["champion"] == 3  # the canary removed, the champion kept
    assert not rows(cp, "churn@4", "model.promote")


def test_scene_3_a_feature_shift_rolls_the_champion_back_on_drift(cp: ControlPlane) -> None:
    (rollback,) = rows(cp, "churn@3", "model.rollback")
    assert by_controller(rollback)
    assert failed_checks(rollback) == {"drift"}
    assert rollback.evidence["rolled_back_to"] == 1
    drifting = set(rollback.evidence["drift"]["drifting"])
    assert drifting & {"monthly_charges", "support_calls"}  # one shifted feature or both
    assert drifting <= {"monthly_charges", "support_calls", "prediction"}  # nothing unshifted
    materializations = rows(cp, "customer_stats@1", "features.materialize")
    assert materializations[0].seq < rollback.seq  # the shift came first
    assert cp.promotions.snapshot("churn").champion == 1
    assert cp.registry.get("churn@3").state == "rolled_back"


def test_audit_chain_verifies(cp: ControlPlane) -> None:
    with cp.sessions() as session:
        assert audit.verify(session).ok


def test_the_demo_stops_what_it_started(demo: Run) -> None:
    work, _ = demo
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if "mlcp" in cmdline and cwd == str(work):
            left.append(cmdline)
    assert not left


def test_the_demo_writes_its_report(demo: Run, cp: ControlPlane) -> None:
    """The page itself is rendered in Chromium by tests/controlplane/report; here: the demo
    wrote it, with every chart and both rollbacks marked."""
    work, done = demo
    page = work / ".mlcp" / "demo" / "churn-report.html"
    assert str(page) in done.stdout
    html = page.read_text()
    for chart in ("latency", "errors", "share", "drift"):
        assert f'data-chart="{chart}"' in html
    assert 'data-event="rollback"' in html
