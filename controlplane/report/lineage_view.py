"""Every version's lineage (``LineageGraph.to_dict()``) merged into one graph in four
columns: feature service version -> training data and its data check -> model version ->
what its deployments did (from the audit log's events). A version trained on rows of its
feature service is drawn service -> data -> version; without training data, service ->
version.

    graph = merge_lineage([build_lineage(v, []).to_dict() for v in versions], events)
    graph["nodes"][0]    # {"id", "column", "label", "detail", "title", "status"}

Pure. A feature service or training set that several versions share is one node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

COLUMNS = ("feature service", "training data", "model version", "deployments")
DEPLOY_ACTIONS = {
    "model.canary": None,  # the label says it
    "model.canary_step": None,
    "model.promote": "production",
    "model.restore": "restored",
    "model.rollback": "rolled back",
    "model.retire": "retired",
    "model.demote": "demoted",
}
STATUS = {  # a version state's colour class on the page
    "production": "good",
    "canary": "live",
    "retired": "muted",
    "rolled_back": "bad",
    "rejected": "bad",
}


def merge_lineage(
    graphs: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []
    for graph in graphs:
        found = {n["kind"]: n for n in graph["nodes"]}
        mv = found["model_version"]
        version = int(graph["version"]["version"])
        state = str(mv["attrs"].get("state"))
        run = found.get("run")
        metrics = (run or {}).get("attrs", {}).get("metrics") or {}
        nodes[mv["id"]] = {
            "id": mv["id"],
            "column": 2,
            "label": mv["label"],
            "detail": state.replace("_", " "),
            "title": _lines(
                f"run {run['label']}" if run else None,
                ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())) or None,
                f"sha256 {str(mv['attrs'].get('artifact_sha256') or '')[:12]}",
            ),
            "status": STATUS.get(state, "plain"),
            "order": version,
        }
        fs, ds = found.get("feature_service"), found.get("dataset")
        if fs is not None:
            nodes.setdefault(fs["id"], _node(fs["id"], 0, fs["label"], "", fs["label"], version))
            # Training sets come from the pinned service (Feast's point-in-time join).
            target = ds["id"] if ds is not None else mv["id"]
            _edge(edges, fs["id"], target, "features for")
        if ds is not None:
            if ds["id"] not in nodes:
                nodes[ds["id"]] = _dataset(ds, found.get("data_check"), version)
            _edge(edges, ds["id"], mv["id"], "trained on")
        deployed = [e for e in events if e["version"] == version and e["action"] in DEPLOY_ACTIONS]
        if deployed:
            steps = [DEPLOY_ACTIONS[e["action"]] or _short(e["label"]) for e in deployed]
            last = deployed[-1]["action"]
            node_id = f"deployments:{version}"
            nodes[node_id] = _node(
                node_id,
                3,
                f"v{version}: {steps[-1]}",
                " → ".join(_collapse(steps)),
                _lines(*(f"{e['ts'][:19].replace('T', ' ')}Z {e['label']}" for e in deployed)),
                version,
                status="bad" if last == "model.rollback" else STATUS.get(state, "plain"),
            )
            edges.append({"source": mv["id"], "target": node_id, "relation": "deployed"})
    return {"columns": list(COLUMNS), "nodes": list(nodes.values()), "edges": edges}


def _edge(edges: list[dict[str, str]], source: str, target: str, relation: str) -> None:
    edge = {"source": source, "target": target, "relation": relation}
    if edge not in edges:
        edges.append(edge)


def _dataset(ds: Mapping[str, Any], check: Mapping[str, Any] | None, order: int) -> dict[str, Any]:
    attrs = ds["attrs"]
    fingerprint = str(attrs.get("fingerprint") or "")
    label = ds["label"]
    if "/" in label or "\\" in label:
        label = PurePath(label).name
    detail = f"sha256 {fingerprint[:12]} · {attrs.get('rows')} rows"
    status = "plain"
    if check is not None:
        detail += f" · data check {check['label']}"
        status = {"passed": "good", "failed": "bad"}.get(str(check["label"]), "plain")
    title = _lines(ds["label"], f"sha256 {fingerprint}", ", ".join(attrs.get("columns") or []))
    return _node(ds["id"], 1, label, detail, title, order, status=status)


def _node(
    node_id: str,
    column: int,
    label: str,
    detail: str,
    title: str,
    order: int,
    status: str = "plain",
) -> dict[str, Any]:
    return {
        "id": node_id,
        "column": column,
        "label": label,
        "detail": detail,
        "title": title,
        "status": status,
        "order": order,
    }


def _short(label: str) -> str:
    """'v2 canary 10%' -> 'canary 10%' (the node names the version once)."""
    head, _, rest = label.partition(" ")
    return rest if head.startswith("v") and rest else label


def _collapse(steps: list[str]) -> list[str]:
    """'canary 10%', 'canary 50%' -> 'canary 10%', '50%': the path stays short."""
    out: list[str] = []
    in_canary = False
    for step in steps:
        canary = step.startswith("canary ")
        out.append(step.removeprefix("canary ") if canary and in_canary else step)
        in_canary = canary
    return out


def _lines(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)
