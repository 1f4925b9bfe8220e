"""``mlcp lineage NAME@VERSION``: where a version came from and what happened to it."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json, short, when


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print the graph as JSON (nodes, edges)")
@pass_env
def lineage(env: Env, ref: str, as_json: bool) -> None:
    """Print REF's lineage (REF is NAME@VERSION or NAME@ALIAS) as a tree."""
    graph = env.service.lineage(ref)
    if as_json:
        emit_json(graph)
    else:
        click.echo(render_tree(graph))


def render_tree(graph: dict[str, Any]) -> str:
    """The lineage graph (``LineageGraph.to_dict()``) as a tree people read."""
    v = graph["version"]
    nodes = graph["nodes"]
    lines = [f"{v['ref']}  [{v['state']}]"]
    branches: list[tuple[str, list[str]]] = []
    sha = short(v["artifact_sha256"])
    branches.append((f"model     {v['model_uri']}  ({v['model_format']}, sha256 {sha})", []))
    run_children = []
    if v["params"]:
        run_children.append(
            "params   " + ", ".join(f"{k}={val}" for k, val in sorted(v["params"].items()))
        )
    if v["metrics"]:
        run_children.append(
            "metrics  " + ", ".join(f"{k}={val:.4g}" for k, val in sorted(v["metrics"].items()))
        )
    run_children.append(f"code     {v['code_version'] or '(not in git)'}")
    branches.append((f"run       mlflow run {v['run_id']}", run_children))
    branches.append((f"features  {v['feature_service'] or '(no feature service pinned)'}", []))
    td = v["training_data"]
    if td is None:
        branches.append(("data      (no training data recorded)", []))
    else:
        source = f"  {td['source']}" if td["source"] else ""
        data_children = []
        if td["data_check"] is not None:
            check = next((n for n in nodes if n["kind"] == "data_check"), None)
            data_children.append(f"check    {check['label'] if check else 'recorded'}")
        rows = f"sha256 {short(td['fingerprint'])}, {td['rows']} rows{source}"
        branches.append((f"data      {rows}", data_children))
    events = [
        f"#{e['attrs']['seq']} {when(e['attrs']['ts'])} {e['label']} by {e['attrs']['actor']}"
        for e in nodes
        if e["kind"] == "event"
    ]
    registered = f"registered by {v['registered_by']} at {when(v['registered_at'])}"
    branches.append((f"history   {registered}", events))
    for i, (head, children) in enumerate(branches):
        last = i == len(branches) - 1
        lines.append(("└── " if last else "├── ") + head)
        pad = "    " if last else "│   "
        for j, child in enumerate(children):
            lines.append(pad + ("└── " if j == len(children) - 1 else "├── ") + child)
    return "\n".join(lines)
