"""Writing the report: gathered, rendered, and put in place whole.

    write_report(cp, "churn", Path("churn-report.html"))   # -> the path written

Light at import (the remote CLI writes what the API sent with `write_atomically`).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.context import ControlPlane


def report_html(cp: ControlPlane, name: str, since: datetime | None = None) -> str:
    """The page for model ``name`` (what ``GET /v1/models/{name}/report`` answers)."""
    from controlplane.report.gather import gather_report
    from controlplane.report.page import render_report

    return render_report(gather_report(cp, name, since=since))


def write_report(cp: ControlPlane, name: str, path: Path, since: datetime | None = None) -> Path:
    """Write model ``name``'s report to ``path`` and return it."""
    return write_atomically(path, report_html(cp, name, since))


def write_atomically(path: Path, text: str) -> Path:
    """Write beside ``path`` and rename over it: a reader never sees half a page."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
