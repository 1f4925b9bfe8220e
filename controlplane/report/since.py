"""``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``7d``) or a time (ISO
8601; without a zone it is UTC). ValueError, saying both forms, for anything else.

    parse_since("30m", now) == now - timedelta(minutes=30)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_since(text: str, now: datetime) -> datetime:
    match = _DURATION.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 30m, 2h, 7d) nor an ISO time "
            "(2026-03-01T12:00:00Z)",
        ) from None
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).astimezone(UTC)
