"""The merged lineage graph (`merge_lineage`) as inline SVG: four columns of boxes joined
by curved arrows, left to right.

    svg = lineage_svg(merge_lineage(graphs, events))

Pure. Boxes carry ``data-node`` (their id) and a ``<title>`` with the full details;
labels too long for a box are cut with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

WIDTH = 1000
COL_W, GAP, MARGIN = 205, 55, 10
NODE_H, ROW_H, HEAD = 60, 72, 30
CHARS = 27  # what a box's 12 px bold label holds
DETAIL_CHARS = 33  # and each of its two 11 px detail lines


def lineage_svg(graph: Mapping[str, Any]) -> str:
    nodes = list(graph["nodes"])
    if not nodes:
        return "<p class=note>No versions registered.</p>"
    columns: dict[int, list[Mapping[str, Any]]] = {}
    for node in sorted(nodes, key=lambda n: (n["order"], n["label"])):
        columns.setdefault(int(node["column"]), []).append(node)
    rows = max(len(c) for c in columns.values())
    height = HEAD + rows * ROW_H + 10
    where: dict[str, tuple[float, float]] = {}  # id -> (x, y) of the box's top left
    for column, members in columns.items():
        offset = (rows - len(members)) * ROW_H / 2  # centre short columns
        for i, node in enumerate(members):
            where[node["id"]] = (_x(column), HEAD + offset + i * ROW_H)
    parts = [
        f'<svg class="lineage" data-chart="lineage" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z"/></marker>'
        "</defs>",
    ]
    for i, title in enumerate(graph["columns"]):
        x = _x(i) + COL_W / 2
        parts.append(f'<text class="colhead" x="{x:.0f}" y="18">{escape(title)}</text>')
        if i not in columns:
            parts.append(f'<text class="colnone" x="{x:.0f}" y="{HEAD + 20}">(none)</text>')
    for edge in graph["edges"]:
        if edge["source"] in where and edge["target"] in where:
            parts.append(_edge(where[edge["source"]], where[edge["target"]], edge["relation"]))
    for node in nodes:
        parts.append(_box(node, *where[node["id"]]))
    parts.append("</svg>")
    return "\n".join(parts)


def _x(column: int) -> float:
    return MARGIN + column * (COL_W + GAP)


def _edge(source: tuple[float, float], target: tuple[float, float], relation: str) -> str:
    x1, y1 = source[0] + COL_W, source[1] + NODE_H / 2
    x2, y2 = target[0] - 2, target[1] + NODE_H / 2
    bend = (x2 - x1) / 2
    return (
        f'<path class="edge" d="M{x1:.1f} {y1:.1f} C{x1 + bend:.1f} {y1:.1f} '
        f'{x2 - bend:.1f} {y2:.1f} {x2:.1f} {y2:.1f}" marker-end="url(#arrow)">'
        f"<title>{escape(relation)}</title></path>"
    )


def _box(node: Mapping[str, Any], x: float, y: float) -> str:
    title = "\n".join(p for p in (node["label"], node["detail"], node["title"]) if p)
    details = "".join(
        f'<text class="detail" x="{x + 8:.1f}" y="{y + 36 + 14 * i:.1f}">{escape(line)}</text>'
        for i, line in enumerate(wrap(node["detail"], DETAIL_CHARS, lines=2))
    )
    return (
        f'<g class="node {escape(node["status"])}" data-node="{escape(node["id"])}">'
        f"<title>{escape(title)}</title>"
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{COL_W}" height="{NODE_H}" rx="6"/>'
        f'<text class="label" x="{x + 8:.1f}" y="{y + 18:.1f}">'
        f"{escape(wrap(node['label'], CHARS)[0])}</text>{details}</g>"
    )


def wrap(text: str, width: int, lines: int = 1) -> list[str]:
    """``text`` in at most ``lines`` lines of ``width`` characters, broken at spaces; what
    does not fit ends in an ellipsis (the box's tooltip has it whole)."""
    out: list[str] = []
    rest = text.split()
    while rest and len(out) < lines:
        line = rest.pop(0)
        while rest and len(line) + 1 + len(rest[0]) <= width:
            line += " " + rest.pop(0)
        out.append(line)
    if rest or any(len(line) > width for line in out):
        last = out[-1] if out else ""
        out[-1:] = [(last if len(last) < width else last[: width - 1]) + "…"]
    return out or [""]
