"""One dependency's ups and downs, logged as two lines per outage rather than one per failure.

    store = Outage("the online store (redis://cache:6379)", log)
    store.failed("connection refused")   # the first failure: one warning
    store.failed("connection refused")   # counted, not logged
    store.ok()                           # one warning: back after 2 failures over 3.1 s

Thread-safe; the clock is injectable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class Outage:
    """Whether ``what`` is down now, since when, and how many failures the outage has seen."""

    def __init__(
        self,
        what: str,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        *,
        impact: str = "",
    ) -> None:
        self.what, self.log, self.clock, self.impact = what, log, clock, impact
        self.failures = 0  # in the current outage
        self.outages = 0  # since start
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, why: object) -> bool:
        """Record a failure; True when it began an outage (and was logged)."""
        with self._lock:
            self.failures += 1
            if self._since is not None:
                return False
            self._since = self.clock()
            self.outages += 1
        impact = f"; {self.impact}" if self.impact else ""
        self.log.warning("%s is unavailable (%s)%s", self.what, why, impact)
        return True

    def ok(self) -> bool:
        """Record a success; True when it ended an outage (and was logged)."""
        if self._since is None:  # the common case, without the lock
            return False
        with self._lock:
            since, failures = self._since, self.failures
            if since is None:
                return False
            self._since, self.failures = None, 0
        self.log.warning(
            "%s is back after %d failure%s over %.1f s",
            self.what,
            failures,
            "" if failures == 1 else "s",
            self.clock() - since,
        )
        return True
