"""JSON logs carrying the request id, and the id itself (accepted from ``X-Request-ID`` or made).

configure_json_logs()                      # mlcp serve does this once
token = REQUEST_ID.set("4f1c...")          # the middleware does this per request
log.info("answered")                       # {"ts": ..., "request_id": "4f1c...", ...}
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# What we echo back: printable, bounded, no separators that could split a header or a log line.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")


def request_id(given: str | None) -> str:
    """The caller's id when it is safe to echo, else a new one."""
    if given and _SAFE_ID.match(given):
        return given
    return os.urandom(16).hex()  # as unique as uuid4().hex, a sixth of its cost


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and extras."""

    EXTRAS = ("model", "version", "endpoint", "status", "duration_ms", "method", "path")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        if rid:
            entry["request_id"] = rid
        for key in self.EXTRAS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logs(level: int = logging.INFO) -> None:
    """Route the root logger (and uvicorn's) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The app logs each request itself, with its id; uvicorn's access line would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
