"""One active controller at a time; the others wait as standbys and take over when it dies.

    lease = leadership(settings)          # PostgreSQL: advisory lock; SQLite: a lock file
    if lease.hold():                      # True while this process leads (call every tick)
        ...
    lease.release()

On PostgreSQL the leader holds a session advisory lock on a connection of its own: when its
process dies the server closes the session and frees the lock (TCP keepalives notice a
vanished host), and the next standby's ``hold()`` gets it. On SQLite the leader holds an
exclusive ``flock`` on ``<home>/controller.lock``, which the kernel frees when the process
exits, however it exits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import psycopg

    from controlplane.settings import Settings

log = logging.getLogger(__name__)

# pg_advisory_lock's key: any 64-bit number unlikely to clash with another application's.
LOCK_KEY = 0x6D6C_6370_6374_6C72  # "mlcpctlr"


class Leadership(Protocol):
    def hold(self) -> bool:
        """Whether this process leads now: keeps the lock it has, or tries to take it."""
        ...

    def release(self) -> None: ...


class AdvisoryLock:
    """Leadership by ``pg_try_advisory_lock`` on a dedicated connection."""

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        self.url, self.connect_timeout_s = url, connect_timeout_s
        self._conn: psycopg.Connection | None = None

    def hold(self) -> bool:
        import psycopg

        try:
            if self._conn is not None:
                self._conn.execute("SELECT 1")  # still connected: the lock is still ours
                return True
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout_s)),
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                application_name="mlcp-controller",
            )
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if row is None or not row[0]:
                conn.close()
                return False
            self._conn = conn
            return True
        except psycopg.Error as exc:
            log.warning("the controller lease is lost or unreachable (%s)", exc)
            self._drop()
            return False

    def release(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # the server frees the advisory lock with the session
            except Exception:
                log.debug("closing the lease connection failed", exc_info=True)


class FileLock:
    """Leadership by an exclusive ``flock`` on a file (one machine: the SQLite default)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def hold(self) -> bool:
        import fcntl

        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # closing frees the flock


def leadership(settings: Settings) -> Leadership:
    """The lease that fits the control-plane database: an advisory lock on PostgreSQL, a
    lock file beside the SQLite database file."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() == "postgresql":
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return AdvisoryLock(plain, settings.db_connect_timeout_s)
    database = Path(url.database or settings.home / "controlplane.db")
    return FileLock(database.with_name(database.name + ".controller.lock"))
