"""Waiting for a condition in tests: poll it with a deadline, never sleep a guessed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any], timeout_s: float = 120, what: str = "", poll_s: float = 0.05
) -> Any:
    """Call ``condition`` until it returns something truthy (returned), or fail after
    ``timeout_s`` naming ``what`` was awaited."""
    end = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what or condition}")
        threading.Event().wait(poll_s)
