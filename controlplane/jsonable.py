"""Values as JSON hands them back: datetimes as ISO strings, tuples and sets as lists.

The CLI prints results through it and `LocalService` returns them through it, so a command
prints the same whether its result came from the stores or from the control API.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for what the control plane's results hold."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def as_json(value: Any) -> Any:
    """``value`` after a JSON round trip: what the control API returns for the same data."""
    return json.loads(json.dumps(value, default=json_default))
