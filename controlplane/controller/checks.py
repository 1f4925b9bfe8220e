"""The checks an analysis runs on one version's traffic: pure functions of counts.

    check = error_rate_slo(traffic, max_rate=0.01, alpha=0.001)
    check.verdict        # pass | fail | inconclusive | skip (not applicable)

Each check fails only when an exact test on the counts says the breach is real at
significance ``alpha`` (so a handful of requests can't fail it by chance), and the
analysis that runs it is inconclusive below its minimum traffic (so they can't pass it by
chance either). Latency is tested the same way: "p99 <= L" means at most 1% of requests
are slower than L, so the count of requests certainly slower than L is tested against 1%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from controlplane.controller.stats import binomial_sf, fisher_greater
from controlplane.controller.traffic import Traffic

Verdict = Literal["pass", "fail", "inconclusive", "skip"]
TAIL = 0.01  # the share of requests a p99 allows above it


@dataclass(frozen=True)
class Check:
    """One check's result: what was observed, against what, and the test behind it."""

    name: str
    verdict: Verdict
    observed: float | None
    threshold: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "verdict": self.verdict,
            "observed": self.observed,
            "threshold": self.threshold,
            **self.detail,
        }

    def describe(self) -> str:
        observed = "n/a" if self.observed is None else f"{self.observed:.4g}"
        return f"{self.name}: observed {observed}, needs {self.threshold}"


def _skip(name: str, why: str) -> Check:
    return Check(name, "skip", None, "-", {"note": why})


def error_rate_slo(traffic: Traffic, max_rate: float | None, alpha: float) -> Check:
    """Failed requests (5xx, 503/504) against an absolute error-rate SLO (binomial test)."""
    name = "error_rate"
    if max_rate is None:
        return _skip(name, "no slo.max_error_rate")
    if traffic.served == 0:
        return Check(name, "inconclusive", None, f"<= {max_rate:g}", {"note": "no traffic"})
    rate = traffic.failed / traffic.served
    p_value = binomial_sf(traffic.failed, traffic.served, max_rate)
    verdict: Verdict = "fail" if rate > max_rate and p_value < alpha else "pass"
    return Check(
        name,
        verdict,
        round(rate, 6),
        f"<= {max_rate:g}",
        {"failed": traffic.failed, "served": traffic.served, "p_value": _p(p_value)},
    )


def error_rate_versus(traffic: Traffic, reference: Traffic, against: str, alpha: float) -> Check:
    """Failed requests against a reference's (the champion's, or the version's own baseline)
    over the same windows: one-sided Fisher exact test."""
    name = f"error_rate_vs_{against}"
    if reference.served == 0:
        return Check(name, "inconclusive", None, f"not above {against}", {"note": "no reference"})
    ref_rate = reference.failed / reference.served
    threshold = f"not above {against}'s {ref_rate:.4g}"
    if traffic.served == 0:
        return Check(name, "inconclusive", None, threshold, {"note": "no traffic"})
    rate = traffic.failed / traffic.served
    p_value = fisher_greater(traffic.failed, traffic.served, reference.failed, reference.served)
    verdict: Verdict = "fail" if rate > ref_rate and p_value < alpha else "pass"
    return Check(
        name,
        verdict,
        round(rate, 6),
        threshold,
        {
            "failed": traffic.failed,
            "served": traffic.served,
            f"{against}_failed": reference.failed,
            f"{against}_served": reference.served,
            "p_value": _p(p_value),
        },
    )


def p99_slo(traffic: Traffic, p99_ms: float | None, alpha: float) -> Check:
    """The p99 latency against an absolute SLO."""
    if p99_ms is None:
        return _skip("p99_ms", "no slo.p99_ms")
    return _p99("p99_ms", traffic, p99_ms / 1000, f"<= {p99_ms:g} ms", alpha)


def p99_versus(
    traffic: Traffic,
    reference: Traffic,
    against: str,
    ratio: float,
    min_increase_ms: float,
    alpha: float,
) -> Check:
    """The p99 latency against ``ratio`` times a reference's p99 (at least
    ``min_increase_ms`` above it)."""
    name = f"p99_vs_{against}"
    ref_p99 = reference.p99_s()
    if ref_p99 is None:
        return Check(
            name, "inconclusive", None, f"<= {ratio:g}x {against}", {"note": "no reference"}
        )
    limit = max(ref_p99 * ratio, ref_p99 + min_increase_ms / 1000)
    threshold = f"<= {limit * 1000:.4g} ms ({ratio:g}x {against}'s {ref_p99 * 1000:.4g} ms)"
    return _p99(name, traffic, limit, threshold, alpha)


def _p99(name: str, traffic: Traffic, limit_s: float, threshold: str, alpha: float) -> Check:
    p99 = traffic.p99_s()
    if p99 is None:
        return Check(name, "inconclusive", None, threshold, {"note": "no timed requests"})
    slower = traffic.slower_than(limit_s)
    p_value = binomial_sf(slower, traffic.timed, TAIL)
    verdict: Verdict = "fail" if p99 > limit_s and p_value < alpha else "pass"
    return Check(
        name,
        verdict,
        round(p99 * 1000, 3),
        threshold,
        {"slower": slower, "timed": traffic.timed, "p_value": _p(p_value)},
    )


def cost_versus(traffic: Traffic, reference: Traffic, max_ratio: float | None) -> Check:
    """Device time per prediction against ``max_ratio`` times the champion's over the same
    windows (skipped without ``slo.max_canary_cost_ratio``). Device time is measured, not
    sampled: the ratio is compared as it is, once both answered predictions."""
    name = "cost_vs_champion"
    if max_ratio is None:
        return _skip(name, "no slo.max_canary_cost_ratio")
    mine, theirs = traffic.device_s_per_prediction(), reference.device_s_per_prediction()
    threshold = f"<= {max_ratio:g}x champion's device time per prediction"
    if mine is None or not theirs:
        return Check(name, "inconclusive", None, threshold, {"note": "no predictions to cost"})
    ratio = mine / theirs
    return Check(
        name,
        "fail" if ratio > max_ratio else "pass",
        round(ratio, 4),
        threshold,
        {
            "device_ms_per_prediction": round(mine * 1000, 6),
            "champion_device_ms_per_prediction": round(theirs * 1000, 6),
        },
    )


def _p(value: float) -> float:
    return float(f"{value:.3g}")
