"""A model's report: one self-contained HTML page (inline CSS, SVG and a little script) with
latency, error rate, traffic share and drift per version over time, the audit log's
rollbacks, promotions and canary steps marked on them, the gate results and the lineage.

    path = write_report(cp, "churn", Path("churn-report.html"))   # what `mlcp report` does
    data = gather_report(cp, "churn", since=an_hour_ago)          # JSON-able dict
    html = render_report(data)                                    # pure

``gather`` reads through the commands' own readers; ``series``, ``events`` and
``lineage_view`` shape what they return; ``charts``, ``graph`` and ``page`` draw it.
Names resolve on first use (PEP 562): the remote CLI's ``mlcp report`` needs only
``since`` and ``write_atomically``, not the stores.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.report.gather import gather_report
    from controlplane.report.page import render_report
    from controlplane.report.since import parse_since
    from controlplane.report.write import report_html, write_atomically, write_report

_WHERE = {
    "gather_report": "controlplane.report.gather",
    "parse_since": "controlplane.report.since",
    "render_report": "controlplane.report.page",
    "report_html": "controlplane.report.write",
    "write_atomically": "controlplane.report.write",
    "write_report": "controlplane.report.write",
}

__all__ = [
    "gather_report",
    "parse_since",
    "render_report",
    "report_html",
    "write_atomically",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'controlplane.report' has no attribute {name!r}")
