"""The report's pure parts: windows to series, audit rows to markers and rollbacks, lineage
merged, and the page drawn from them, without a database or a browser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from controlplane.report import parse_since, render_report
from controlplane.report.charts import TimeAxis, nice_ticks, time_ticks
from controlplane.report.events import report_events, rollbacks
from controlplane.report.lineage_view import merge_lineage
from controlplane.report.series import bucket_seconds, drift_series, traffic_series
from serving.windows import LATENCY_EDGES_S

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def window(
    version: int, at: float, requests: int, *, replica: str = "a", errors: int = 0,
    latency_s: float = 0.004, role: str = "champion",
) -> dict[str, Any]:  # fmt: skip
    counts = [0] * (len(LATENCY_EDGES_S) + 1)
    counts[next(i for i, e in enumerate(LATENCY_EDGES_S) if latency_s <= e)] = requests
    return {
        "replica": replica, "model": "churn", "version": version, "role": role,
        "started_at": (T0 + timedelta(seconds=at)).isoformat(),
        "ended_at": (T0 + timedelta(seconds=at + 10)).isoformat(),
        "requests": requests, "errors": errors, "rejected": 0, "client_errors": 0,
        "latency_sum_s": latency_s * requests, "latency_edges_s": list(LATENCY_EDGES_S),
        "latency_counts": counts,
    }  # fmt: skip


def row(seq: int, at: float, action: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "seq": seq, "ts": (T0 + timedelta(seconds=at)).isoformat(), "actor": "ci",
        "action": action, "subject": subject, "before": None, "after": None, "reason": None,
        "evidence": None, **extra,
    }  # fmt: skip


ROWS = [
    row(1, 0, "model.register", "churn@1"),
    row(2, 1, "model.promote", "churn@1"),
    row(3, 60, "model.canary", "churn@2", after={"canary_percent": 10}),
    row(4, 120, "model.canary_step", "churn@2", after={"canary_percent": 50}),
    row(
        5,
        150,
        "model.rollback",
        "churn@2",
        actor="controller@x",
        reason="p99 412 ms > 100 ms <script>alert(1)</script>",
        evidence={"automatic": True, "failed_checks": ["p99"], "rolled_back_to": None},
    ),
]


def lineage(version: int, state: str) -> dict[str, Any]:
    fp = "ab" * 32
    return {
        "ref": f"churn@{version}",
        "version": {"version": version},
        "nodes": [
            {
                "id": "feature_service:churn_features@1",
                "kind": "feature_service",
                "label": "churn_features@1",
                "attrs": {},
            },
            {
                "id": f"dataset:{fp}",
                "kind": "dataset",
                "label": "/data/train.parquet",
                "attrs": {"fingerprint": fp, "rows": 400, "columns": ["a", "b"]},
            },
            {"id": f"data_check:{fp}", "kind": "data_check", "label": "passed", "attrs": {}},
            {
                "id": f"run:r{version}",
                "kind": "run",
                "label": f"r{version}",
                "attrs": {"metrics": {"roc_auc": 0.91}},
            },
            {
                "id": f"model_version:churn@{version}",
                "kind": "model_version",
                "label": f"churn@{version}",
                "attrs": {"state": state, "artifact_sha256": "f" * 64},
            },
        ],
        "edges": [],
    }


def drift_report() -> dict[str, Any]:
    ats = [(T0 + timedelta(seconds=s)).isoformat() for s in (70, 80, 90)]
    return {
        "windows": [{"at": at} for at in ats],
        "detectors": [
            {
                "name": "a",
                "threshold": 4.0,
                "series": {
                    "cusum": [0.0, 2.0, 6.0],
                    "psi": [0.01, 0.2, 0.4],
                    "js": [0.0, 0.05, 0.1],
                    "status": ["ok", "ok", "drift"],
                },
            },
            {
                "name": "b",
                "threshold": 5.0,
                "series": {
                    "cusum": [1.0, 1.0, None],
                    "psi": [0.02, 0.02, None],
                    "js": [0.0, 0.0, None],
                    "status": ["ok", "ok", None],
                },
            },
        ],
        "conclusion": {"summary": "drift confirmed in a"},
        "policy": {"action": "rollback"},
    }


def sample() -> dict[str, Any]:
    windows = [window(1, s, 200, replica=r) for s in range(0, 200, 10) for r in ("a", "b")]
    windows += [
        window(2, s, 40, replica=r, latency_s=0.4, errors=1)
        for s in range(60, 150, 10)
        for r in ("a", "b")
    ]
    events = report_events(ROWS)
    start, end = T0, T0 + timedelta(seconds=210)
    bucket = bucket_seconds(windows, start, end)
    versions = [
        {"version": 1, "ref": "churn@1", "state": "production", "registered_at": T0.isoformat(),
         "registered_by": "alice", "feature_service": "churn_features@1", "evaluation": None,
         "gate_runs": [{"created_at": T0.isoformat(), "target": "production",
                        "outcome": "promoted", "passed": True, "created_by": "ci",
                        "policy_revision": 1, "champion_version": None,
                        "results": [{"gate": "metric:roc_auc", "passed": True,
                                     "observed": 0.91, "threshold": 0.7}]}]},
        {"version": 2, "ref": "churn@2", "state": "rolled_back", "registered_at": T0.isoformat(),
         "registered_by": "alice", "feature_service": "churn_features@1",
         "evaluation": {"dataset_rows": 300, "dataset_fingerprint": "cd" * 32,
                        "metrics": {"roc_auc": 0.93}},
         "gate_runs": [{"created_at": T0.isoformat(), "target": "canary",
                        "outcome": "canary", "passed": False, "created_by": "ci",
                        "policy_revision": 1, "champion_version": 1,
                        "results": [{"gate": "latency", "passed": False, "observed": 12.5,
                                     "threshold": 10.0, "severity": "warning",
                                     "details": {"reason": "slow"}}]}]},
    ]  # fmt: skip
    return {
        "model": "churn",
        "generated_at": end.isoformat(),
        "since": None,
        "range": {"start": start.isoformat(), "end": end.isoformat()},
        "windows": {"count": len(windows), "truncated": False, "replicas": ["a", "b"]},
        "bucket_s": bucket,
        "traffic": traffic_series(windows, start, bucket),
        "drift": [drift_series(drift_report(), 2)],
        "events": events,
        "rollbacks": rollbacks(events, ROWS),
        "deployment": {"champion": {"version": 1}, "challenger": None, "fallback": None},
        "policy": {"p99_ms": 100.0, "max_error_rate": 0.01},
        "versions": versions,
        "lineage": merge_lineage([lineage(1, "production"), lineage(2, "rolled_back")], events),
    }


# -- series --------------------------------------------------------------------------------------
def test_windows_of_both_replicas_merge_into_one_point_per_version_and_bucket() -> None:
    windows = [window(1, 0, 90, replica="a"), window(1, 0, 90, replica="b")]
    windows += [window(2, 0, 20, replica="a", errors=2, latency_s=0.2)]
    [v1, v2] = traffic_series(windows, T0, 10.0)
    [p1], [p2] = v1["points"], v2["points"]
    assert (p1["requests"], p1["replicas"], p2["requests"]) == (180, 2, 20)
    assert p1["share"] == pytest.approx(0.9)
    assert p2["share"] == pytest.approx(0.1)
    assert p2["error_rate"] == pytest.approx(0.1)
    assert 150 < p2["p99_ms"] <= 200
    assert p1["p50_ms"] < 5


def test_shadow_copies_take_no_share_of_traffic() -> None:
    windows = [window(1, 0, 100), window(2, 0, 100, role="shadow")]
    [v1, v2] = traffic_series(windows, T0, 10.0)
    assert v1["points"][0]["share"] == 1.0
    assert v2["points"][0]["share"] == 0.0


def test_buckets_widen_to_keep_a_long_period_readable() -> None:
    windows = [window(1, 0, 10)]
    assert bucket_seconds(windows, T0, T0 + timedelta(seconds=100)) == 10.0
    assert bucket_seconds(windows, T0, T0 + timedelta(hours=6)) == 120.0


def test_the_drift_score_is_the_largest_cusum_over_its_threshold() -> None:
    series = drift_series(drift_report(), 2)
    scores = [(p["score"], p["detector"]) for p in series["points"]]
    assert scores == [(0.2, "b"), (0.5, "a"), (1.5, "a")]
    assert series["detectors"][0] == {
        "name": "a", "threshold": 4.0, "psi": 0.4, "js": 0.1, "cusum": 6.0, "status": "drift",
    }  # fmt: skip
    since = drift_series(drift_report(), 2, since=T0 + timedelta(seconds=85))
    assert len(since["points"]) == 1


# -- events --------------------------------------------------------------------------------------
def test_audit_rows_become_labelled_markers_and_rollbacks_with_their_cause() -> None:
    events = report_events(reversed(ROWS))
    assert [(e["kind"], e["label"]) for e in events] == [
        ("history", "v1 registered"),
        ("promote", "v1 → production"),
        ("canary", "v2 canary 10%"),
        ("canary", "v2 canary 50%"),
        ("rollback", "v2 rolled back"),
    ]
    [rollback] = rollbacks(events, ROWS)
    assert rollback["failed_checks"] == ["p99"]
    assert rollback["automatic"] is True
    assert rollback["served_s"] == 30.0  # since its last step


def test_lineage_merges_shared_nodes_and_adds_what_deployments_did() -> None:
    graph = merge_lineage([lineage(1, "production"), lineage(2, "rolled_back")],
                          report_events(ROWS))  # fmt: skip
    by_column: dict[int, list[str]] = {}
    for node in graph["nodes"]:
        by_column.setdefault(node["column"], []).append(node["label"])
    assert by_column[0] == ["churn_features@1"]
    assert by_column[1] == ["train.parquet"]
    assert by_column[2] == ["churn@1", "churn@2"]
    assert by_column[3] == ["v1: production", "v2: rolled back"]
    details = [n["detail"] for n in graph["nodes"] if n["column"] == 3]
    assert details == ["production", "canary 10% → 50% → rolled back"]
    dataset = next(n for n in graph["nodes"] if n["column"] == 1)
    assert "data check passed" in dataset["detail"]
    assert dataset["status"] == "good"
    # service -> data once, data -> each version, each deployed version -> its deployments
    assert len(graph["edges"]) == 5
    assert {"source": "feature_service:churn_features@1", "target": "dataset:" + "ab" * 32,
            "relation": "features for"} in graph["edges"]  # fmt: skip


# -- axes and --since ----------------------------------------------------------------------------
def test_time_ticks_are_round_and_labelled_in_utc() -> None:
    start = T0.timestamp() + 7
    ticks = time_ticks(TimeAxis(start, start + 600))
    assert [label for _, label in ticks] == ["09:02", "09:04", "09:06", "09:08", "09:10"]
    assert all(t % 120 == 0 for t, _ in ticks)
    assert nice_ticks(7.3) == [0, 2, 4, 6]


def test_since_takes_a_duration_or_a_time() -> None:
    now = T0
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("1.5h", now) == now - timedelta(minutes=90)
    assert parse_since("2026-03-01T12:00:00", now) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", now)


# -- the page ------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    """Every start tag with its attributes, the text, and SVG's nesting checked."""

    NESTED = ("svg", "g", "text")

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))
        if tag in self.NESTED:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.NESTED:
            assert self.stack[-1:] == [tag], (tag, self.stack[-5:])
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    tags.close()
    assert tags.stack == []
    return tags


def test_the_page_needs_no_network() -> None:
    html = render_report(sample())
    tags = parsed(html)
    for tag, attrs in tags.seen:
        assert tag not in ("link", "img", "iframe", "object", "embed")
        assert "src" not in attrs, (tag, attrs)
        href = attrs.get("href")
        assert href is None or href.startswith("#"), (tag, attrs)
    assert not re.search(r"https?://", html.replace("http://www.w3.org", ""))
    assert "@import" not in html
    assert set(re.findall(r"url\(([^)]*)\)", html)) == {"#arrow"}


def test_every_chart_draws_its_series_and_marks_the_rollback() -> None:
    tags = parsed(render_report(sample()))
    charts = [a["data-chart"] for t, a in tags.seen if t == "svg"]
    assert charts == ["events", "latency", "errors", "share", "drift", "lineage"]
    series = [(a["data-series"], a["data-key"]) for t, a in tags.seen if "data-series" in a]
    assert ("v1 p99", "v1") in series
    assert ("v2 p50", "v2") in series
    assert ("v2 error rate", "v2") in series
    assert ("v1 share", "v1") in series
    assert ("v2 drift", "v2") in series
    points = {a["d"][:1] for t, a in tags.seen if t == "path" and "data-points" in a}
    assert points == {"M"}
    marks = [a["data-event"] for t, a in tags.seen if t == "line" and "mark" in a.get("class", "")]
    assert marks.count("rollback") == 4  # one per time chart
    assert marks.count("canary") == 8
    text = " ".join(tags.text)
    assert text.count("⟲ v2 rolled back") == 4
    assert "time (UTC)" in text
    assert "latency (ms, log scale)" in text
    assert "p99 budget 100 ms" in text
    assert "drift confirmed at 1.0" in text


def test_tables_show_rollbacks_gates_and_escape_what_people_wrote() -> None:
    html = render_report(sample())
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = " ".join(parsed(html).text)
    assert "p99" in text
    assert "30 s" in text  # served 30 s before the rollback
    assert "metric:roc_auc" in text
    assert "FAIL (warning)" in text
    assert "roc_auc 0.93" in text
    nodes = [a["data-node"] for t, a in parsed(html).seen if "data-node" in a]
    assert "feature_service:churn_features@1" in nodes
    assert "deployments:2" in nodes


def test_a_model_with_no_traffic_yet_still_renders() -> None:
    data = sample() | {
        "traffic": [], "drift": [], "events": [], "rollbacks": [], "deployment": None,
        "windows": {"count": 0, "truncated": False, "replicas": []},
    }  # fmt: skip
    text = " ".join(parsed(render_report(data)).text)
    assert "no data in this period" in text
    assert "nothing (never deployed)" in text


def test_box_text_wraps_at_spaces_and_ends_in_an_ellipsis_when_cut() -> None:
    from controlplane.report.graph import wrap

    assert wrap("canary 10% → 50% → production", 20, lines=2) == [
        "canary 10% → 50% →",
        "production",
    ]
    assert wrap("canary 10% → 50% → production → rolled back", 12, lines=2) == [
        "canary 10% →",
        "50% →…",
    ]
    assert wrap("a" * 30, 10) == ["a" * 9 + "…"]
    assert wrap("", 10) == [""]


def test_lines_and_bands_break_where_nothing_was_served() -> None:
    from controlplane.report.charts import Line, time_chart

    points = [(0.0, 50.0), (10.0, 60.0), (20.0, 55.0), (100.0, 40.0), (110.0, 45.0), (200.0, 9.0)]
    axis = TimeAxis(0.0, 200.0)
    for stacked in (False, True):
        line = Line("v1", "#1f77b4", points, max_gap=15.0, key="v1")
        svg = time_chart("t", axis, [line], y_label="y", stacked=stacked, y_max=100.0)
        [d] = re.findall(r'<path d="([^"]*)" data-points', svg)
        assert d.count("M") == 3, (stacked, d)
    lone = time_chart("t", axis, [line], y_label="y")
    assert lone.count('class="lone"') == 1  # the last point has no neighbour: a dot
