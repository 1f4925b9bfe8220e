"""Which process holds a registration, and whether it is still alive.

An intent row records its owner (host, pid, and the process's start, so a recycled pid is not
mistaken for it); anyone on the same host can then tell at once that the owner is gone.

    owner = ProcessIdentity.current()          # ProcessIdentity("ci-7", 4242, "boot:8812345")
    owner.alive()                              # True / False, or None from another host
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessIdentity:
    """A process: its host, pid and start (boot id and start time in clock ticks, on Linux)."""

    host: str
    pid: int
    started: str | None = None

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _started(pid))

    def alive(self) -> bool | None:
        """Whether the process still runs; None when that can't be told from here (another
        host)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, owned by another user
        if self.started is None:
            return True
        return _started(self.pid) == self.started


def _started(pid: int) -> str | None:
    """``<boot id>:<start ticks>`` from /proc (Linux); None elsewhere."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{boot}:{fields[19]}"  # field 22 of the whole line: starttime
