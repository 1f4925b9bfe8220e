"""When a remote call is tried again: a pure decision, so it is tested without a network.

A call is retried only when that cannot do a thing twice: when the request never left
(the connection was refused or timed out), or when the call is safe to repeat (reads,
content-addressed uploads, and registrations, which carry an idempotency key). A safe call is
also retried on ``503`` (the control plane's database or MLflow store is away), waiting at
least what ``Retry-After`` asks. Waits grow exponentially with jitter, capped.

    delay = retry_delay(attempt=2, retries=5, repeatable=True, retry_after_s=None, jitter=0.3)
    # None: give up (the CLI exits 4, "unavailable, retry later"); else seconds to wait
"""

from __future__ import annotations

BASE_DELAY_S = 0.5
MAX_DELAY_S = 8.0


def retry_delay(
    attempt: int,
    retries: int,
    repeatable: bool,
    retry_after_s: float | None = None,
    jitter: float = 1.0,
) -> float | None:
    """Seconds to wait before trying again after failed try number ``attempt`` (1-based), or
    None to give up. ``jitter`` in [0, 1] spreads clients out (half to the full backoff)."""
    if not repeatable or attempt > retries:
        return None
    backoff = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1)) * (0.5 + jitter / 2)
    if retry_after_s is not None:
        backoff = max(backoff, min(retry_after_s, MAX_DELAY_S))
    return backoff


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the date form is not used by mlcp's servers)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
