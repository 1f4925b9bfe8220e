"""A model version's lineage as a graph: data and features -> run -> version -> events.

Pure: built from a ModelVersion and its audit entries, so the CLI tree, the JSON and
(later) the API all read the same structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controlplane.audit import AuditEntry
from registry import ModelVersion


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # feature_service | dataset | data_check | run | model_version | event
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation: str


@dataclass(frozen=True)
class LineageGraph:
    version: ModelVersion
    nodes: list[Node]
    edges: list[Edge]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.version.ref,
            "version": self.version.to_dict(),
            "nodes": [n.__dict__ for n in self.nodes],
            "edges": [e.__dict__ for e in self.edges],
        }

    def node(self, kind: str) -> Node | None:
        return next((n for n in self.nodes if n.kind == kind), None)

    def events(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "event"]


def build_lineage(version: ModelVersion, events: list[AuditEntry]) -> LineageGraph:
    nodes: list[Node] = []
    edges: list[Edge] = []
    mv_id = f"model_version:{version.ref}"
    run_id = f"run:{version.run_id}"
    td = version.training_data

    if version.feature_service:
        fs_id = f"feature_service:{version.feature_service}"
        nodes.append(Node(fs_id, "feature_service", version.feature_service))
        edges.append(Edge(fs_id, run_id, "features_for"))
    if td is not None:
        ds_id = f"dataset:{td.fingerprint}"
        nodes.append(
            Node(
                ds_id,
                "dataset",
                td.source or td.fingerprint[:12],
                {"fingerprint": td.fingerprint, "rows": td.rows, "columns": list(td.columns)},
            )
        )
        edges.append(Edge(ds_id, run_id, "trained_on"))
        if td.data_check is not None:
            dc_id = f"data_check:{td.fingerprint}"
            nodes.append(
                Node(dc_id, "data_check", _check_label(td.data_check), dict(td.data_check))
            )
            edges.append(Edge(dc_id, ds_id, "validates"))
    nodes.append(
        Node(
            run_id,
            "run",
            version.run_id,
            {
                "params": dict(version.params),
                "metrics": dict(version.metrics),
                "code_version": version.code_version,
            },
        )
    )
    nodes.append(
        Node(
            mv_id,
            "model_version",
            version.ref,
            {
                "state": version.state,
                "model_uri": version.model_uri,
                "artifact_sha256": version.artifact_sha256,
                "model_format": version.model_format,
            },
        )
    )
    edges.append(Edge(run_id, mv_id, "produced"))
    for entry in sorted(events, key=lambda e: e.seq):
        ev_id = f"event:{entry.seq}"
        nodes.append(Node(ev_id, "event", entry.action, entry.to_dict()))
        edges.append(Edge(mv_id, ev_id, "recorded"))
    return LineageGraph(version=version, nodes=nodes, edges=edges)


def _check_label(check: Any) -> str:
    status = check.get("success") if isinstance(check, dict) else None
    if status is True:
        return "passed"
    if status is False:
        return "failed"
    return "recorded"
