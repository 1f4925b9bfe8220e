"""`decide`: canary steps, rollbacks and holds as a pure function, without servers or sleeps."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.controller.decide import Decision, History, LiveModel, decide
from controlplane.controller.traffic import Traffic
from controlplane.policy import Policy
from serving.windows import LATENCY_EDGES_S

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
POLICY = Policy.from_yaml(
    """
canary: {steps: [10, 50], min_requests: 100, success_windows: 2, failure_limit: 0,
         inconclusive_limit: 3}
slo: {p99_ms: 200, max_error_rate: 0.01, breach_windows: 2, min_requests: 50}
rollback: {max_per_hour: 2}
"""
)
CANARY = LiveModel("churn", revision=7, champion=1, challenger=2, canary_percent=10, fallback=None)
PRODUCTION = LiveModel("churn", revision=9, champion=2, fallback=1)


def traffic(
    requests: int, failed: int = 0, latency_s: float = 0.004, client_errors: int = 0
) -> Traffic:
    """``requests`` answered at ``latency_s`` (``failed`` of them with a 5xx)."""
    counts = [0] * (len(LATENCY_EDGES_S) + 1)
    timed = requests - client_errors
    counts[_bin(latency_s)] = timed
    return Traffic(
        requests=requests,
        errors=failed,
        client_errors=client_errors,
        latency_counts=tuple(counts),
        windows=(1, 2),
        replicas=("a", "b"),
    )


def _bin(latency_s: float) -> int:
    return next((i for i, e in enumerate(LATENCY_EDGES_S) if latency_s <= e), len(LATENCY_EDGES_S))


def canary_decision(history: History, **traffic_by_version: Traffic) -> Decision:
    by_version = {int(k[1:]): t for k, t in traffic_by_version.items()}
    decisions = decide(CANARY, by_version, POLICY, history, NOW)
    return next(d for d in decisions if d.version == 2)


def test_a_canary_failing_requests_is_rolled_back_with_its_evidence() -> None:
    d = canary_decision(History(), v1=traffic(2000, failed=2), v2=traffic(200, failed=30))
    assert d.action == "rollback"
    assert d.target == 1
    assert "error_rate" in d.reason
    assert d.analysis is not None
    assert d.analysis.verdict == "fail"
    failed = {c.name for c in d.analysis.failures}
    assert failed == {"error_rate", "error_rate_vs_champion"}
    evidence = d.to_dict()["analysis"]
    assert evidence["traffic"]["windows"] == [1, 2]
    assert evidence["traffic"]["replicas"] == ["a", "b"]


def test_a_canary_failing_everything_fails_even_below_min_requests() -> None:
    d = canary_decision(History(), v1=traffic(2000), v2=traffic(12, failed=12))
    assert d.action == "rollback"


def test_a_handful_of_errors_neither_fails_nor_passes_by_chance() -> None:
    # 2 of 200 (1%) against an SLO of 1% and a champion at 0.05%: not significant.
    d = canary_decision(History(), v1=traffic(2000, failed=1), v2=traffic(200, failed=2))
    assert d.analysis is not None
    assert d.analysis.verdict == "pass"
    # ... and 0 of 20 is too little traffic to pass.
    d = canary_decision(History(), v1=traffic(2000), v2=traffic(20))
    assert d.analysis is not None
    assert d.analysis.verdict == "inconclusive"


def test_a_slow_canary_fails_against_the_champion() -> None:
    d = canary_decision(
        History(), v1=traffic(2000, latency_s=0.004), v2=traffic(300, latency_s=0.09)
    )
    assert d.action == "rollback"
    assert d.analysis is not None
    assert [c.name for c in d.analysis.failures] == ["p99_vs_champion"]
    assert "p99_vs_champion: observed" in d.reason


def test_client_errors_are_not_the_canarys_fault() -> None:
    d = canary_decision(History(), v1=traffic(2000), v2=traffic(300, client_errors=250))
    assert d.analysis is not None
    assert d.analysis.failures == ()
    assert d.analysis.traffic.served == 50
    assert d.analysis.verdict == "inconclusive"  # 50 served: under min_requests (100)


def test_the_failure_limit_tolerates_that_many_failed_analyses() -> None:
    policy = Policy.from_dict(
        {**POLICY.body(), "canary": {**POLICY.body()["canary"], "failure_limit": 1}}
    )
    bad = {1: traffic(2000), 2: traffic(200, failed=30)}
    first = next(d for d in decide(CANARY, bad, policy, History(), NOW) if d.version == 2)
    assert first.action == "nothing"
    second = next(
        d for d in decide(CANARY, bad, policy, History(step=("fail",)), NOW) if d.version == 2
    )
    assert second.action == "rollback"


def test_a_passing_canary_advances_then_is_promoted() -> None:
    healthy = {"v1": traffic(2000), "v2": traffic(300)}
    assert canary_decision(History(), **healthy).action == "nothing"  # 1 of 2 passes
    step = canary_decision(History(step=("pass",)), **healthy)
    assert (step.action, step.target) == ("advance", 50)
    last = replace(CANARY, canary_percent=50)
    done = decide(last, {1: traffic(2000), 2: traffic(300)}, POLICY, History(step=("pass",)), NOW)
    assert next(d for d in done if d.version == 2).action == "promote"


def test_a_canary_the_controller_rolled_back_before_is_not_promoted_again() -> None:
    last = replace(CANARY, canary_percent=50)
    history = History(step=("pass",), rolled_back=frozenset({2}))
    d = next(
        d
        for d in decide(last, {1: traffic(2000), 2: traffic(300)}, POLICY, history, NOW)
        if d.version == 2
    )
    assert d.action == "hold"
    assert "rolled churn@2 back before" in d.reason


def test_too_little_traffic_holds_the_canary_and_never_promotes_it() -> None:
    quiet = {"v1": traffic(2000), "v2": traffic(5)}
    assert canary_decision(History(step=("inconclusive",)), **quiet).action == "nothing"
    held = canary_decision(History(step=("pass", "inconclusive", "inconclusive")), **quiet)
    assert held.action == "hold"
    assert "too little traffic" in held.reason
    paused = replace(CANARY, paused=True, hold_reason=held.reason)
    again = decide(
        paused, {1: traffic(2000), 2: traffic(5)}, POLICY, History(step=("inconclusive",) * 5), NOW
    )
    assert next(d for d in again if d.version == 2).action == "nothing"  # said once


def test_a_paused_canary_does_not_advance_but_is_still_rolled_back() -> None:
    paused = replace(CANARY, paused=True, hold_reason="investigating")
    ok = decide(
        paused, {1: traffic(2000), 2: traffic(300)}, POLICY, History(step=("pass",) * 3), NOW
    )
    assert next(d for d in ok if d.version == 2).action == "nothing"
    bad = decide(paused, {1: traffic(2000), 2: traffic(300, failed=50)}, POLICY, History(), NOW)
    assert next(d for d in bad if d.version == 2).action == "rollback"


def test_a_champion_breach_is_confirmed_over_breach_windows_then_rolled_back() -> None:
    failing = {2: traffic(500, failed=40)}
    first = decide(PRODUCTION, failing, POLICY, History(), NOW)[0]
    assert first.action == "nothing"
    assert "breach 1 of 2" in first.reason
    confirmed = decide(PRODUCTION, failing, POLICY, History(champion_run=("fail",)), NOW)[0]
    assert (confirmed.action, confirmed.target) == ("rollback", 1)
    assert "SLO breach confirmed over 2 analyses" in confirmed.reason


def test_a_pass_between_failures_clears_the_breach() -> None:
    failing = {2: traffic(500, failed=40)}
    d = decide(PRODUCTION, failing, POLICY, History(champion_run=("fail", "pass")), NOW)[0]
    assert d.action == "nothing"


def test_a_champion_failing_against_its_baseline_is_caught_below_the_slo() -> None:
    policy = Policy.from_yaml("slo: {breach_windows: 1}\n")  # no absolute SLO at all
    baseline = traffic(20_000, failed=2)
    history = History(baseline=baseline, baseline_windows=10)
    d = decide(PRODUCTION, {2: traffic(1000, failed=20)}, policy, history, NOW)[0]
    assert d.action == "rollback"
    assert d.analysis is not None
    assert [c.name for c in d.analysis.failures] == ["error_rate_vs_baseline"]


def test_no_fallback_holds_and_says_so() -> None:
    alone = replace(PRODUCTION, fallback=None)
    d = decide(alone, {2: traffic(500, failed=40)}, POLICY, History(champion_run=("fail",)), NOW)[0]
    assert d.action == "hold"
    assert "no healthy version to roll back to" in d.reason


def test_the_hourly_cap_holds_instead_of_rolling_back_again() -> None:
    recent = (NOW - timedelta(minutes=10), NOW - timedelta(minutes=50))
    history = History(champion_run=("fail",), rollbacks=recent)
    d = decide(PRODUCTION, {2: traffic(500, failed=40)}, POLICY, history, NOW)[0]
    assert d.action == "hold"
    assert "rollback.max_per_hour: 2" in d.reason
    older = History(champion_run=("fail",), rollbacks=(NOW - timedelta(hours=2),) * 5)
    assert (
        decide(PRODUCTION, {2: traffic(500, failed=40)}, POLICY, older, NOW)[0].action == "rollback"
    )


def test_alert_only_policy_alerts() -> None:
    policy = Policy.from_dict({**POLICY.body(), "rollback": {"on_breach": "alert"}})
    d = decide(
        PRODUCTION, {2: traffic(500, failed=40)}, policy, History(champion_run=("fail",)), NOW
    )[0]
    assert d.action == "alert"


def test_a_champion_rollback_outranks_a_canary_step() -> None:
    model = replace(CANARY, fallback=3)
    traffic_now = {1: traffic(2000, failed=300), 2: traffic(300)}
    decisions = decide(
        model, traffic_now, POLICY, History(step=("pass",), champion_run=("fail",)), NOW
    )
    assert decisions[0].action == "rollback"
    assert decisions[0].version == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_healthy_noisy_traffic_over_1000_analyses_never_rolls_back(seed: int) -> None:
    rng = random.Random(seed)
    run: tuple[str, ...] = ()
    baseline = traffic(20_000, failed=10)
    for _ in range(1000):
        n = rng.randint(60, 600)
        failed = sum(rng.random() < 0.0005 for _ in range(n))  # a healthy 0.05% error rate
        slow = sum(rng.random() < 0.005 for _ in range(n))  # 0.5% of requests at 150 ms
        t = traffic(n, failed=failed) + Traffic(latency_counts=_counts(0.15, slow))
        history = History(champion_run=run[-5:], baseline=baseline, baseline_windows=20)
        d = decide(PRODUCTION, {2: t}, POLICY, history, NOW)[0]
        assert d.action == "nothing", d.reason
        assert d.analysis is not None
        run = (*run, d.analysis.verdict)


def _counts(latency_s: float, n: int) -> tuple[int, ...]:
    counts = [0] * (len(LATENCY_EDGES_S) + 1)
    counts[_bin(latency_s)] = n
    return tuple(counts)


def test_no_traffic_while_replicas_take_up_the_canary_is_not_held_against_it() -> None:
    loading = replace(CANARY, converged=False)
    d = next(
        d
        for d in decide(loading, {1: traffic(2000)}, POLICY, History(step=("skip",) * 5), NOW)
        if d.version == 2
    )
    assert d.action == "nothing"
    assert d.analysis is not None
    assert d.analysis.verdict == "skip"  # recorded, but counts for nothing
    # A real failure while converging still counts.
    bad = decide(loading, {1: traffic(2000), 2: traffic(50, failed=50)}, POLICY, History(), NOW)
    assert next(d for d in bad if d.version == 2).action == "rollback"


def test_a_canary_costing_more_than_the_policy_allows_is_rolled_back() -> None:
    slo = POLICY.slo.model_copy(update={"max_canary_cost_ratio": 1.5})
    costly = POLICY.model_copy(update={"slo": slo})
    champion = replace(traffic(2000), compute_s=2.0, answered=2000)  # 1 device-ms each
    cheap = replace(traffic(300), compute_s=0.39, answered=300)  # 1.3x
    dear = replace(traffic(300), compute_s=0.6, answered=300)  # 2x
    decisions = {
        name: next(d for d in decide(CANARY, {1: champion, 2: t}, costly, History(), NOW)
                   if d.version == 2)
        for name, t in (("cheap", cheap), ("dear", dear))
    }  # fmt: skip
    assert decisions["cheap"].analysis is not None
    assert decisions["cheap"].analysis.failures == ()
    assert decisions["dear"].action == "rollback"
    assert decisions["dear"].analysis is not None
    [check] = decisions["dear"].analysis.failures
    assert (check.name, check.observed) == ("cost_vs_champion", 2.0)
    # Without the policy's bound, cost is not judged.
    plain = canary_decision(History(), v1=champion, v2=dear)
    assert plain.analysis is not None
    assert "cost_vs_champion" not in {c.name for c in plain.analysis.checks}
