"""Serving windows as time series: per version and time bucket, the replicas' windows merged.

    buckets = bucket_seconds(windows, start, end)          # a round width, <= MAX_POINTS buckets
    series = traffic_series(windows, start, bucket_s)      # [{"version": 2, "points": [...]}]
    series[0]["points"][0]   # {"t", "requests", "failed", "error_rate", "p50_ms", "p99_ms",
                             #  "share", "replicas"}

Pure: the windows are ``mlcp serving windows --json`` dicts (``Window.to_dict()``). Latency
quantiles come from the merged histograms, as the controller reads them (`Traffic`); a
version's share is its requests over every version's in the bucket, shadow copies left out
(they answer nobody).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from controlplane.controller.traffic import Traffic

MAX_POINTS = 180  # per series: enough to see a canary step, few enough to read
NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
NOT_ANSWERING = ("shadow",)  # roles whose requests are copies: no share of traffic


def parse_time(value: str | datetime) -> datetime:
    """An ISO timestamp (or datetime) as aware UTC; naive ones are UTC (SQLite's)."""
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).astimezone(UTC)


def bucket_seconds(
    windows: Sequence[Mapping[str, Any]],
    start: datetime,
    end: datetime,
    max_points: int = MAX_POINTS,
) -> float:
    """The bucket width: at least the replicas' window length, wide enough that the span
    holds at most ``max_points`` buckets, rounded up to a readable step."""
    lengths = [
        (parse_time(w["ended_at"]) - parse_time(w["started_at"])).total_seconds() for w in windows
    ]
    window_s = median(lengths) if lengths else 1.0
    span_s = max((end - start).total_seconds(), 1.0)
    wanted = max(window_s, span_s / max_points, 1.0)
    return float(next((s for s in NICE_STEPS_S if s >= wanted), math.ceil(wanted / 86400) * 86400))


def traffic_series(
    windows: Iterable[Mapping[str, Any]], start: datetime, bucket_s: float
) -> list[dict[str, Any]]:
    """Per version (ascending), one point per bucket it has windows in, oldest first. A
    window counts in the bucket its end falls in; ``t`` is the bucket's middle."""
    merged: dict[tuple[int, int], Traffic] = {}
    answered: dict[tuple[int, int], int] = {}  # (version, bucket) -> requests it answered
    for window in windows:
        index = int((parse_time(window["ended_at"]) - start).total_seconds() // bucket_s)
        key = (int(window["version"]), index)
        replica = window.get("replica")
        counts = Traffic.from_dict(
            {**window, "windows": [], "replicas": [replica] if replica else []}
        )
        merged[key] = merged.get(key, Traffic()) + counts
        if window.get("role") not in NOT_ANSWERING:
            answered[key] = answered.get(key, 0) + int(window["requests"])
    totals: dict[int, int] = {}
    for (_, index), requests in answered.items():
        totals[index] = totals.get(index, 0) + requests
    out: dict[int, list[dict[str, Any]]] = {}
    for (version, index), traffic in sorted(merged.items()):
        middle = start + timedelta(seconds=(index + 0.5) * bucket_s)
        total = totals.get(index, 0)
        share = answered.get((version, index), 0) / total if total else None
        out.setdefault(version, []).append(_point(middle, traffic, share))
    return [{"version": v, "points": points} for v, points in sorted(out.items())]


def _point(t: datetime, traffic: Traffic, share: float | None) -> dict[str, Any]:
    p50, p99, rate = traffic.quantile_s(0.5), traffic.p99_s(), traffic.error_rate()
    return {
        "t": t.isoformat(),
        "requests": traffic.requests,
        "failed": traffic.failed,
        "error_rate": rate,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "share": share,
        "replicas": len(traffic.replicas),
    }


def drift_series(
    report: Mapping[str, Any], version: int, since: datetime | None = None
) -> dict[str, Any]:
    """A version's drift over its analyses (``drift_report``'s dict) as one score per
    analysis: the largest CUSUM / threshold over its detectors (1.0 is where the controller
    confirms drift), naming the detector; and each detector's latest statistics."""
    detectors = [d for d in report.get("detectors", []) if d.get("threshold")]
    points = []
    for i, window in enumerate(report.get("windows", [])):
        at = parse_time(window["at"])
        if since is not None and at < since:
            continue
        scored = [
            (d["series"]["cusum"][i] / d["threshold"], d)
            for d in detectors
            if i < len(d["series"]["cusum"]) and d["series"]["cusum"][i] is not None
        ]
        if not scored:
            continue
        score, top = max(scored, key=lambda s: s[0])
        psi = top["series"]["psi"][i]
        points.append({"t": at.isoformat(), "score": score, "detector": top["name"], "psi": psi})
    latest = []
    for d in report.get("detectors", []):
        series = d["series"]
        latest.append(
            {
                "name": d["name"],
                "threshold": d.get("threshold"),
                **{key: _last(series.get(key, [])) for key in ("psi", "js", "cusum", "status")},
            }
        )
    return {
        "version": version,
        "points": points,
        "detectors": latest,
        "conclusion": (report.get("conclusion") or {}).get("summary"),
        "policy": report.get("policy"),
    }


def _last(values: Sequence[Any]) -> Any:
    return next((v for v in reversed(values) if v is not None), None)
