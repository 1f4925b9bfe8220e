"""The report page: `gather_report`'s dict as one self-contained HTML document.

    html = render_report(data)

Pure. Inline CSS, inline SVG charts drawn here, and a small inline script (legend clicks
hide a version; it also counts what each chart drew into ``data-drawn``); no request
leaves the page, so it opens from a file, an e-mail attachment or a CI artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from itertools import pairwise
from typing import Any

from controlplane.report.charts import (
    Guide,
    Line,
    Marker,
    TimeAxis,
    event_lane,
    time_chart,
    version_color,
)
from controlplane.report.graph import lineage_svg
from controlplane.report.series import parse_time
from controlplane.report.style import CSS, SCRIPT

MARKER_KINDS = ("rollback", "promote", "canary", "hold", "shadow")


def render_report(data: Mapping[str, Any]) -> str:
    name = str(data["model"])
    axis = TimeAxis(_epoch(data["range"]["start"]), _epoch(data["range"]["end"]))
    markers = [
        Marker(_epoch(e["ts"]), e["kind"], e["label"], _event_title(e))
        for e in data["events"]
        if e["kind"] in MARKER_KINDS and axis.start <= _epoch(e["ts"]) <= axis.end
    ]
    body = [
        _header(data),
        '<section id="charts"><h2>Serving over time</h2>',
        _period(data),
        _marker_legend(),
        event_lane(axis, markers),
        _latency(data, axis, markers),
        _errors(data, axis, markers),
        _share(data, axis, markers),
        _drift(data, axis, markers),
        "</section>",
        _rollbacks(data),
        _drift_tables(data),
        _gates(data),
        '<section id="lineage"><h2>Lineage</h2>',
        "<p class=note>Feature service version → training data (fingerprint, data check) → "
        "model version → what its deployments did. Hover a box for details.</p>",
        lineage_svg(data["lineage"]),
        "</section>",
        _history(data),
        "<footer>Written by <code>mlcp report</code>. Self-contained: nothing on this page "
        "is fetched from the network.</footer>",
    ]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>mlcp report: {escape(name)}</title><style>{CSS}</style></head>\n"
        f"<body data-model='{escape(name)}'><main>\n"
        + "\n".join(body)
        + f"\n</main><script>{SCRIPT}</script></body></html>\n"
    )


# -- header --------------------------------------------------------------------------------------
def _header(data: Mapping[str, Any]) -> str:
    name = escape(str(data["model"]))
    live = data.get("deployment")
    cells = []
    if live is None:
        cells.append(("serving", "nothing (never deployed)"))
    else:
        champion = live.get("champion")
        challenger = live.get("challenger")
        cells.append(("champion", f"v{champion['version']}" if champion else "none"))
        if challenger:
            paused = " (paused)" if challenger.get("paused") else ""
            cells.append(
                ("canary", f"v{challenger['version']} at {challenger['percent']}%{paused}")
            )
        cells.append(("fallback", f"v{live['fallback']}" if live.get("fallback") else "none"))
        if live.get("hold_reason"):
            cells.append(("controller holds", str(live["hold_reason"])))
    rollbacks = data["rollbacks"]
    automatic = sum(1 for r in rollbacks if r["automatic"])
    cells.append(("versions", str(len(data["versions"]))))
    cells.append(("rollbacks", f"{len(rollbacks)} ({automatic} by the controller)"))
    summary = "".join(
        f"<div class='cell{' wide' if len(v) > 40 else ''}'><span>{escape(k)}</span>"
        f"<b>{escape(v)}</b></div>"
        for k, v in cells
    )
    return (
        f"<header><h1>{name} <small>model report</small></h1>"
        f"<p class=note>Generated {_when(data['generated_at'])}. All times UTC.</p>"
        f"<div class=summary>{summary}</div></header>"
    )


def _period(data: Mapping[str, Any]) -> str:
    windows = data["windows"]
    replicas = ", ".join(windows["replicas"]) or "none"
    cut = (
        " Only the newest windows are shown: narrow the period with <code>--since</code>."
        if windows["truncated"]
        else ""
    )
    return (
        f"<p class=note>From {_when(data['range']['start'])} to {_when(data['range']['end'])}: "
        f"{windows['count']} serving windows from replicas {escape(replicas)}, merged per "
        f"version into {_duration(data['bucket_s'])} buckets.{cut}</p>"
    )


def _marker_legend() -> str:
    items = [
        ("rollback", "rollback"),
        ("promote", "promotion to production"),
        ("canary", "canary start / step"),
        ("hold", "controller hold / alert"),
    ]
    return (
        "<div class='legend markers'>"
        + "".join(f"<span class='mk {k}'><i></i>{escape(label)}</span>" for k, label in items)
        + "</div>"
    )


# -- charts --------------------------------------------------------------------------------------
def _latency(data: Mapping[str, Any], axis: TimeAxis, markers: Sequence[Marker]) -> str:
    lines = []
    for s in data["traffic"]:
        v = s["version"]
        pts = s["points"]
        for key, label, dash in (("p99_ms", "p99", None), ("p50_ms", "p50", "5 4")):
            lines.append(
                Line(
                    f"v{v} {label}",
                    version_color(v),
                    [(_epoch(p["t"]), p[key]) for p in pts],
                    dash=dash,
                    width=2.0 if dash is None else 1.5,
                    tips=[_tip(v, p, f"{label} {_ms(p[key])}") for p in pts],
                    key=f"v{v}",
                    max_gap=1.5 * data["bucket_s"],
                )
            )
    policy = data.get("policy") or {}
    guides = (
        [Guide(policy["p99_ms"], f"p99 budget {policy['p99_ms']:g} ms")]
        if policy.get("p99_ms")
        else []
    )
    svg = time_chart(
        "latency", axis, lines, markers, y_label="latency (ms, log scale)",
        y_format=lambda v: f"{v:g}", log_y=True, guides=guides,
    )  # fmt: skip
    return _figure(
        "Latency per version",
        "p99 solid, p50 dashed; merged histograms of every replica's windows.",
        _version_legend(data),
        svg,
    )


def _errors(data: Mapping[str, Any], axis: TimeAxis, markers: Sequence[Marker]) -> str:
    lines = [
        Line(
            f"v{s['version']} error rate",
            version_color(s["version"]),
            [(_epoch(p["t"]), _pct(p["error_rate"])) for p in s["points"]],
            tips=[
                _tip(
                    s["version"],
                    p,
                    f"{p['failed']} of {p['requests']} failed ({_pct_text(p['error_rate'])})",
                )
                for p in s["points"]
            ],
            key=f"v{s['version']}",
            max_gap=1.5 * data["bucket_s"],
        )
        for s in data["traffic"]
    ]
    policy = data.get("policy") or {}
    limit = policy.get("max_error_rate")
    guides = [Guide(limit * 100, f"SLO {limit * 100:g}%")] if limit else []
    svg = time_chart(
        "errors", axis, lines, markers, y_label="error rate (%)",
        y_format=lambda v: f"{v:g}%", guides=guides,
    )  # fmt: skip
    return _figure(
        "Error rate per version",
        "Server errors and rejections (503/504) over requests served, client errors excluded.",
        _version_legend(data),
        svg,
    )


def _share(data: Mapping[str, Any], axis: TimeAxis, markers: Sequence[Marker]) -> str:
    lines = [
        Line(
            f"v{s['version']} share",
            version_color(s["version"]),
            [(_epoch(p["t"]), _pct(p["share"])) for p in s["points"]],
            tips=[
                _tip(s["version"], p, f"{_pct_text(p['share'])} of requests") for p in s["points"]
            ],
            key=f"v{s['version']}",
            max_gap=1.5 * data["bucket_s"],
        )
        for s in data["traffic"]
    ]
    svg = time_chart(
        "share", axis, lines, markers, y_label="share of requests (%)",
        y_format=lambda v: f"{v:g}%", y_max=100.0, stacked=True,
    )  # fmt: skip
    return _figure(
        "Traffic share per version",
        "Stacked: each version's requests over all answered requests (shadow copies excluded).",
        _version_legend(data),
        svg,
    )


def _drift(data: Mapping[str, Any], axis: TimeAxis, markers: Sequence[Marker]) -> str:
    lines = [
        Line(
            f"v{d['version']} drift",
            version_color(d["version"]),
            [(_epoch(p["t"]), p["score"]) for p in d["points"]],
            tips=[
                f"v{d['version']} at {_clock(p['t'])}: CUSUM/threshold {p['score']:.2f} "
                f"({p['detector']}" + (f", PSI {p['psi']:.3f})" if p["psi"] is not None else ")")
                for p in d["points"]
            ],
            key=f"v{d['version']}",
            max_gap=_gap([_epoch(p["t"]) for p in d["points"]], data["bucket_s"]),
        )
        for d in data["drift"]
    ]
    svg = time_chart(
        "drift", axis, lines, markers, y_label="CUSUM / threshold",
        y_format=lambda v: f"{v:g}", guides=[Guide(1.0, "drift confirmed at 1.0")],
        empty="no drift analyses in this period (the controller analyses live versions)",
    )  # fmt: skip
    return _figure(
        "Drift score per version",
        "Per controller analysis: the largest CUSUM over the version's detectors (inputs and "
        "predictions against its own reference), divided by that detector's threshold.",
        _version_legend(data, [d["version"] for d in data["drift"]]),
        svg,
    )


def _figure(title: str, note: str, legend: str, svg: str) -> str:
    return (
        f"<figure><figcaption><h3>{escape(title)}</h3><p class=note>{escape(note)}</p>"
        f"</figcaption>{legend}{svg}</figure>"
    )


def _version_legend(data: Mapping[str, Any], versions: Sequence[int] | None = None) -> str:
    shown = versions if versions is not None else [s["version"] for s in data["traffic"]]
    states = {v["version"]: v["state"] for v in data["versions"]}
    items = "".join(
        f"<button type=button class=key data-key='v{v}' title='click to hide or show v{v}'>"
        f"<i style='background:{version_color(v)}'></i>v{v} "
        f"<small>{escape(str(states.get(v, '')).replace('_', ' '))}</small></button>"
        for v in shown
    )
    return f"<div class=legend>{items}</div>" if items else ""


# -- tables --------------------------------------------------------------------------------------
def _rollbacks(data: Mapping[str, Any]) -> str:
    rows = data["rollbacks"]
    if not rows:
        return "<section id=rollbacks><h2>Rollbacks</h2><p class=note>None.</p></section>"
    body = "".join(
        "<tr class=bad>"
        f"<td>{_when(r['ts'])}</td><td>v{r['version']}"
        + (f" → v{r['to']}" if r.get("to") else "")
        + f"</td><td>{'controller' if r['automatic'] else escape(str(r['actor']))}</td>"
        f"<td>{escape(_cause(r))}</td><td>{_duration(r['served_s'])}</td>"
        f"<td class=reason>{escape(str(r.get('reason') or ''))}</td></tr>"
        for r in rows
    )
    return (
        "<section id=rollbacks><h2>Rollbacks</h2><table><thead><tr><th>when</th>"
        "<th>version</th><th>by</th><th>cause</th><th>after serving</th><th>reason</th></tr>"
        f"</thead><tbody>{body}</tbody></table></section>"
    )


def _cause(rollback: Mapping[str, Any]) -> str:
    checks = list(rollback.get("failed_checks") or [])
    if rollback.get("drifting"):
        checks = [c for c in checks if c != "drift"]
        checks.append("drift in " + ", ".join(rollback["drifting"]))
    return ", ".join(checks) or ("manual" if not rollback.get("automatic") else "-")


def _drift_tables(data: Mapping[str, Any]) -> str:
    parts = []
    for d in data["drift"]:
        rows = "".join(
            f"<tr class='{'bad' if det.get('status') == 'drift' else ''}'>"
            f"<td>{escape(str(det['name']))}</td><td>{_num(det.get('psi'), '.3f')}</td>"
            f"<td>{_num(det.get('js'), '.3f')}</td>"
            f"<td>{_num(det.get('cusum'), '.2f')} / {_num(det.get('threshold'), '.2f')}</td>"
            f"<td>{escape(str(det.get('status') or '-'))}</td></tr>"
            for det in d["detectors"]
        )
        parts.append(
            f"<h3>v{d['version']}</h3><p class=note>{escape(str(d.get('conclusion') or ''))}</p>"
            "<table><thead><tr><th>detector</th><th>last PSI</th><th>last JS</th>"
            f"<th>CUSUM / threshold</th><th>status</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if not parts:
        return ""
    return (
        "<section id=drift><h2>Drift detectors (latest analysis)</h2>"
        + "".join(parts)
        + ("</section>")
    )


def _gates(data: Mapping[str, Any]) -> str:
    parts = []
    for v in sorted(data["versions"], key=lambda v: -int(v["version"])):
        head = (
            f"<h3><i class=sw style='background:{version_color(int(v['version']))}'></i>"
            f"{escape(v['ref'])} <small class='state {escape(v['state'])}'>"
            f"{escape(v['state'].replace('_', ' '))}</small></h3>"
            f"<p class=note>registered {_when(v['registered_at'])} by "
            f"{escape(str(v['registered_by']))}"
            + (f"; features {escape(v['feature_service'])}" if v.get("feature_service") else "")
            + "</p>"
        )
        evaluation = v.get("evaluation")
        if evaluation:
            metrics = ", ".join(
                f"{escape(k)} {val:.4g}" for k, val in sorted(evaluation["metrics"].items())
            )
            head += (
                f"<p>Evaluation on {evaluation['dataset_rows']} rows "
                f"(sha256 {escape(evaluation['dataset_fingerprint'][:12])}): {metrics}</p>"
            )
        runs = v.get("gate_runs") or []
        if not runs:
            head += "<p class=note>No gate runs: never promoted.</p>"
        for run in runs:
            head += _gate_run(run)
        parts.append(f"<div class=version>{head}</div>")
    return "<section id=gates><h2>Gate results</h2>" + "".join(parts) + "</section>"


def _gate_run(run: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{'good' if r['passed'] else 'bad'}'><td>{escape(str(r['gate']))}</td>"
        f"<td>{'pass' if r['passed'] else 'FAIL'}"
        + (" (warning)" if not r["passed"] and r.get("severity") == "warning" else "")
        + f"</td><td>{escape(_value(r.get('observed')))}</td>"
        f"<td>{escape(_value(r.get('threshold')))}</td>"
        f"<td class=reason>{escape(str((r.get('details') or {}).get('reason') or ''))}</td></tr>"
        for r in run.get("results") or []
    )
    champion = run.get("champion_version")
    against = f", against champion v{champion}" if champion else ""
    return (
        f"<details open><summary>{_when(run['created_at'])}: to {escape(run['target'])} → "
        f"<b class='{'good' if run['passed'] else 'bad'}'>{escape(run['outcome'])}</b> "
        f"(by {escape(str(run['created_by']))}, policy rev {run['policy_revision']}{against})"
        "</summary><table><thead><tr><th>gate</th><th>result</th><th>observed</th>"
        f"<th>threshold</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _history(data: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{escape(e['kind'])}'><td>{_when(e['ts'])}</td><td>{escape(e['label'])}</td>"
        f"<td><code>{escape(str(e['action']))}</code></td><td>{escape(str(e['actor']))}</td>"
        f"<td class=reason>{escape(str(e.get('reason') or ''))}</td></tr>"
        for e in reversed(data["events"])
    )
    return (
        "<section id=history><h2>History</h2><p class=note>Every audit-log row about this "
        "model's versions, newest first (<code>mlcp audit list --subject NAME@*</code>).</p>"
        "<details><summary>show all</summary><table><thead><tr><th>when</th><th>what</th>"
        f"<th>action</th><th>by</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
        "</details></section>"
    )


def _gap(times: Sequence[float], bucket_s: float) -> float:
    """Analyses further apart than this were not consecutive (the version stopped serving):
    three times their usual spacing, and at least a bucket and a half."""
    steps = sorted(b - a for a, b in pairwise(times))
    usual = steps[len(steps) // 2] if steps else 0.0
    return max(3 * usual, 1.5 * bucket_s)


# -- formatting ----------------------------------------------------------------------------------
def _epoch(ts: str) -> float:
    return parse_time(ts).timestamp()


def _when(ts: str) -> str:
    return parse_time(ts).strftime("%Y-%m-%d %H:%M:%S")


def _clock(ts: str) -> str:
    return parse_time(ts).strftime("%H:%M:%S")


def _tip(version: int, point: Mapping[str, Any], what: str) -> str:
    return f"v{version} at {_clock(point['t'])}: {what}, {point['requests']} requests"


def _event_title(event: Mapping[str, Any]) -> str:
    by = "the controller" if event.get("automatic") else str(event["actor"])
    reason = f": {event['reason']}" if event.get("reason") else ""
    return f"{_when(event['ts'])} {event['label']} (by {by}){reason}"


def _pct(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


def _pct_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
