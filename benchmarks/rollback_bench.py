"""Rollback benchmark: how fast the controller rolls back, what it costs, and how often it
rolls back for nothing.

    make bench    # or: .venv/bin/python benchmarks/rollback_bench.py [--quick]
                  #        [--healthy-analyses 1000] [--repeats 3] [--out PATH]

On this machine, with two real `mlcp serve` replicas, one `mlcp controller run` and a load
generator, all on loopback against the embedded stores (SQLite):

1. **Healthy traffic.** A good champion answers steady load while the controller watches it
   (windows and analyses every 0.25 s, so 1,000 analyses take about four minutes). Counted:
   rollbacks, failed analyses (false breaches), holds.
2. **Breaches, at a 1 s interval** (replicas cut 1 s windows, the controller ticks every
   second, the policy analyses every second):
   - *latency*: a canary that spends about 55 ms more per batch than the champion (0.03 ms)
     goes live at 20%; onset is the moment the first replica routes to it;
   - *errors*: the champion starts failing (its traffic switches to inputs it answers with
     NaN, i.e. 500); onset is the moment the traffic switches.
   For each: seconds from onset to the controller's rollback (its audit row), and to the
   moment both replicas route only to the previous version (polled from each replica's
   /v1/serving/state every 20 ms); requests that failed during it, split into the bad
   version's own failures and anything else (a failure caused by the rollback itself).

Results go to ``benchmarks/results/rollback.json`` (``--quick``: ``rollback-quick.json``).
Targets (reported, never asserted): under 5 s from onset to every replica serving the
previous version (Flagger's defaults, 60 s x 5, need 300 s); 0 requests failed by the
rollback; 0 false rollbacks in 1,000 healthy analyses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the real-deployment harness lives with the tests

import numpy as np  # noqa: E402

from controlplane import audit  # noqa: E402
from controlplane.context import ControlPlane  # noqa: E402
from controlplane.db.models import AnalysisRow  # noqa: E402
from controlplane.policy import Policy  # noqa: E402
from controlplane.settings import Settings  # noqa: E402
from registry import RegistrationRequest  # noqa: E402
from tests.controlplane.controller.cluster import (  # noqa: E402
    MODELS,
    WIDTH,
    Cluster,
    Load,
    Process,
    policy_yaml,
    wait_until,
)

NAME = "rollback_bench"
TARGETS = {"onset_to_all_replicas_s_max": 5.0, "failed_by_rollback": 0, "false_rollbacks": 0}


def policy(interval_s: float) -> Policy:
    return Policy.from_yaml(
        policy_yaml(
            canary={"interval_s": interval_s, "success_windows": 3},
            slo={"breach_windows": 2},
        )
        + "rollback: {max_per_hour: 20}\n"
    )


def setup(home: Path) -> tuple[ControlPlane, dict[str, str]]:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    values = {"home": str(home / ".mlcp"), "actor": "bench"}
    env = {**os.environ, **{f"MLCP_{k.upper()}": v for k, v in values.items()}}
    cp = ControlPlane(Settings(**values))  # type: ignore[arg-type]
    x = np.random.default_rng(0).random((6, WIDTH), dtype=np.float32) * 0.5
    # v1 good, v2 good (the champion), v3 slow (a canary), v4 fragile (a champion that breaks)
    for seed, kind in enumerate(("good", "good", "slow", "fragile"), start=1):
        model = MODELS[kind](seed)
        cp.registry.register(RegistrationRequest(name=NAME, model=model, input_example=x))
    cp.policies.set(NAME, policy(1.0), "bench")
    for version in (1, 2):
        assert cp.promotions.promote(f"{NAME}@{version}", "bench").accepted
    return cp, env


def start(
    cp: ControlPlane, cluster: Cluster, window_s: float, interval: str
) -> tuple[list[Process], Process]:
    replicas = [cluster.serve(f"replica-{i}", window_s=window_s) for i in ("a", "b")]
    for replica in replicas:
        cluster.wait_ready(replica)
    leads = _leads(cp)
    controller = cluster.controller("controller", interval=interval)
    wait_until(lambda: _leads(cp) > leads, what="the controller to lead")
    return replicas, controller


def _leads(cp: ControlPlane) -> int:
    with cp.sessions() as session:
        return len(audit.entries(session, action="controller.lead"))


def serving(
    cluster: Cluster, replicas: list[Process], champion: int, challenger: int | None
) -> bool:
    return all(cluster.serves(r, NAME, champion, challenger) for r in replicas)


def rollbacks(cp: ControlPlane) -> list[audit.AuditEntry]:
    with cp.sessions() as session:
        return audit.entries(session, subject=f"{NAME}@*", action="model.rollback")


def healthy_run(cp: ControlPlane, env: dict[str, str], home: Path, analyses: int) -> dict[str, Any]:
    cp.policies.set(NAME, policy(0.25), "bench")
    before = len(rollbacks(cp))
    with Cluster(home, env) as cluster:
        replicas, _ = start(cp, cluster, window_s=0.25, interval="0.25s")
        started = time.monotonic()
        with Load([r.url for r in replicas], NAME, threads=2) as load:
            first = _analyses(cp)
            wait_until(lambda: _analyses(cp) - first >= analyses, timeout_s=analyses * 2 + 120,
                       what=f"{analyses} analyses")  # fmt: skip
        seconds = time.monotonic() - started
    with cp.sessions() as session:
        verdicts = [
            v
            for (v,) in session.query(AnalysisRow.verdict)
            .filter(AnalysisRow.model_name == NAME, AnalysisRow.role == "champion")
            .order_by(AnalysisRow.id.desc())
            .limit(analyses)
        ]
        holds = len(audit.entries(session, subject=f"{NAME}@*", action="controller.hold"))
    statuses: dict[str, int] = {}
    for answer in load.answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    return {
        "analyses": len(verdicts),
        "replica_windows": len(verdicts) * 2,  # two replicas report per analysis interval
        "seconds": round(seconds, 1),
        "requests": load.count(),
        "statuses": statuses,
        "transport_failures": len(load.failures),
        "verdicts": {v: verdicts.count(v) for v in ("pass", "fail", "inconclusive")},
        "false_rollbacks": len(rollbacks(cp)) - before,
        "holds": holds,
    }


def _analyses(cp: ControlPlane) -> int:
    with cp.sessions() as session:
        return (
            session.query(AnalysisRow)
            .filter(AnalysisRow.model_name == NAME, AnalysisRow.role == "champion")
            .count()
        )


def breach_runs(cp: ControlPlane, env: dict[str, str], home: Path, repeats: int) -> dict[str, Any]:
    cp.policies.set(NAME, policy(1.0), "bench")
    runs: dict[str, list[dict[str, Any]]] = {"latency_canary": [], "errors_champion": []}
    with Cluster(home, env) as cluster:
        replicas, _ = start(cp, cluster, window_s=1.0, interval="1s")
        urls = [r.url for r in replicas]
        for _ in range(repeats):
            runs["latency_canary"].append(_latency_canary(cp, cluster, replicas, urls))
        for _ in range(repeats):
            runs["errors_champion"].append(_errors_champion(cp, cluster, replicas, urls))
    return {kind: {"runs": found, "summary": _summary(found)} for kind, found in runs.items()}


def _latency_canary(
    cp: ControlPlane, cluster: Cluster, replicas: list[Process], urls: list[str]
) -> dict[str, Any]:
    wait_until(lambda: serving(cluster, replicas, 2, None), what="v2 alone")
    count = len(rollbacks(cp))
    with Load(urls, NAME) as load:
        wait_until(lambda: load.count() > 100, what="traffic")
        assert cp.promotions.promote(f"{NAME}@3", "bench", canary=True).outcome == "canary"
        onset = wait_until(lambda: _any_serves(cluster, replicas, 3) and time.monotonic(),
                           what="the canary to go live")  # fmt: skip
        decided = wait_until(lambda: len(rollbacks(cp)) > count and time.monotonic(),
                             timeout_s=120, what="the rollback")  # fmt: skip
        done = wait_until(lambda: serving(cluster, replicas, 2, None) and time.monotonic(),
                          what="both replicas on v2")  # fmt: skip
        answers = load.since(onset)
        failed = [a for a in answers if a.at <= done and a.status != 200]
    return _run(onset, decided, done, answers, failed, bad_version="3", load=load)


def _errors_champion(
    cp: ControlPlane, cluster: Cluster, replicas: list[Process], urls: list[str]
) -> dict[str, Any]:
    assert cp.promotions.promote(f"{NAME}@4", "bench").outcome == "promoted"
    wait_until(lambda: serving(cluster, replicas, 4, None), what="v4 in production")
    count = len(rollbacks(cp))
    with Load(urls, NAME) as load:
        wait_until(lambda: load.count() > 300, what="healthy traffic on v4")
        onset = time.monotonic()
        load.poison(150.0, 200.0)
        decided = wait_until(lambda: len(rollbacks(cp)) > count and time.monotonic(),
                             timeout_s=120, what="the rollback")  # fmt: skip
        done = wait_until(lambda: serving(cluster, replicas, 2, None) and time.monotonic(),
                          what="both replicas on v2")  # fmt: skip
        answers = load.since(onset)
        failed = [a for a in answers if a.at <= done and a.status != 200]
    return _run(onset, decided, done, answers, failed, bad_version="4", load=load)


def _any_serves(cluster: Cluster, replicas: list[Process], challenger: int) -> bool:
    return any(
        (cluster.state(r)["deployments"].get(NAME) or {}).get("challenger") == challenger
        for r in replicas
    )


def _run(
    onset: float,
    decided: float,
    done: float,
    answers: list[Any],
    failed: list[Any],
    bad_version: str,
    load: Load,
) -> dict[str, Any]:
    own = [a for a in failed if f"@{bad_version} failed on this request" in (a.error or "")]
    return {
        "onset_to_rollback_s": round(decided - onset, 3),
        "onset_to_all_replicas_s": round(done - onset, 3),
        "requests_during": sum(1 for a in answers if a.at <= done),
        "failed_by_bad_version": len(own),
        "failed_by_rollback": len(failed) - len(own),
        "transport_failures": len(load.failures),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["onset_to_all_replicas_s"] for r in runs]
    return {
        "onset_to_all_replicas_s_median": round(statistics.median(times), 3),
        "onset_to_all_replicas_s_max": max(times),
        "failed_by_rollback": sum(r["failed_by_rollback"] + r["transport_failures"] for r in runs),
        "failed_by_bad_version": sum(r["failed_by_bad_version"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 healthy analyses, 1 repeat")
    parser.add_argument("--healthy-analyses", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    analyses = 100 if args.quick else args.healthy_analyses
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="mlcp-rollback-bench-") as tmp:
        home = Path(tmp)
        cp, env = setup(home)
        try:
            breaches = breach_runs(cp, env, home, repeats)
            healthy = healthy_run(cp, env, home, analyses)
        finally:
            cp.close()
    worst = max(b["summary"]["onset_to_all_replicas_s_max"] for b in breaches.values())
    by_rollback = sum(b["summary"]["failed_by_rollback"] for b in breaches.values())
    result = {
        "benchmark": "rollback",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "setup": {
            "replicas": 2,
            "controller_interval_s": 1.0,
            "replica_window_s": 1.0,
            "policy": "canary steps [20, 50], failure_limit 0; slo max_error_rate 0.05, "
            "breach_windows 2, max_canary_p99_ratio 3; healthy run at 0.25 s windows",
            "store": "SQLite (embedded default); replicas poll desired state every 0.2 s",
        },
        "breaches": breaches,
        "healthy": healthy,
        "targets": TARGETS,
        "met": {
            "onset_to_all_replicas_s_max": worst < TARGETS["onset_to_all_replicas_s_max"],
            "failed_by_rollback": by_rollback == 0,
            "false_rollbacks": healthy["false_rollbacks"] == 0,
        },
    }
    suffix = "-quick" if args.quick else ""
    out = args.out or ROOT / f"benchmarks/results/rollback{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"breaches": {k: v["summary"] for k, v in breaches.items()},
                      "healthy": healthy, "met": result["met"]}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
