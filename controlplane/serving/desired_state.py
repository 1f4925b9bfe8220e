"""What replicas should serve, read from the control-plane database, and how they hear of
a change.

Every transaction that changes who serves a model (promote, canary, approve, shadow,
unshadow: wherever ``mlcp_models.revision`` is bumped) calls `notify_desired_state`, which on
PostgreSQL queues ``NOTIFY mlcp_desired_state, '<model>'``; PostgreSQL delivers it at commit
and drops it on rollback. `DbDesiredState.wait` LISTENs on a connection of its own and
returns as soon as one arrives; on SQLite it just waits out the timeout (replicas poll).
A lost LISTEN connection is reopened within `RECONNECT_S`, whatever the caller's timeout, and
the wait then returns (a change may have been announced while nobody listened); the outage
is logged once when it begins and once when it ends.

    source = DbDesiredState(cp.sessions, models=("churn",), database_url=settings.database_url)
    while running:
        deployments = source.read()     # {"churn": Deployment(champion=3, shadow=4, ...)}
        apply(deployments)
        source.wait(30.0)               # returns early when a change is announced
    source.close()
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Self

from sqlalchemy import or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from controlplane.db.models import ModelRow
from features.outage import Outage
from serving.spec import Deployment

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CHANNEL = "mlcp_desired_state"
# How long one blocking read of the LISTEN socket lasts: bounds how late close() is noticed.
_SLICE_S = 0.25
# How often a lost LISTEN connection is retried while a wait lasts.
RECONNECT_S = 1.0


def notify_desired_state(session: Session, name: str) -> None:
    """Announce that ``name``'s desired state changed, inside the caller's transaction.

    PostgreSQL only (delivered at commit, never for a rolled-back change); elsewhere a no-op,
    and replicas notice on their next poll.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :name)"), {"channel": CHANNEL, "name": name}
        )


class DbDesiredState:
    """The control-plane database as a replica's `serving.spec.DesiredStateSource`.

    ``DbDesiredState(cp.sessions, models=("churn",))``: ``read()`` the deployments, ``wait(s)``
    for a change, ``close()``. ``wait_for_change(s)`` says whether a PostgreSQL notification
    woke it, and ``notifications`` counts such wake-ups. ``database_url`` defaults to the
    sessions' engine's URL. ``wait`` never raises: a broken LISTEN connection is dropped and
    retried every `RECONNECT_S` seconds; once it is back, the wait returns.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        models: tuple[str, ...] = (),
        database_url: str = "",
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.models = tuple(models)
        url = database_url or _engine_url(sessions)
        self._listen_url = _libpq_url(url) if url.startswith("postgresql") else None
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()  # one user of the LISTEN connection at a time
        self._closed = threading.Event()
        self._reconnected = False
        self.notifications = 0
        self.listen_outage = Outage(
            f"LISTEN {CHANNEL}", log, impact=f"polling, and reconnecting every {RECONNECT_S:g} s"
        )

    @property
    def listening(self) -> bool:
        """Whether a LISTEN connection is open now (PostgreSQL only)."""
        return self._conn is not None and not self._conn.closed

    def read(self) -> dict[str, Deployment]:
        """Every model with a champion, challenger or shadow (only ``models`` when given)."""
        # LISTEN before reading: a change committed after this read still wakes the next wait().
        # A wait() in another thread holds the lock, and then the connection already listens.
        if self._lock.acquire(blocking=False):
            try:
                self._ensure_listening()
            finally:
                self._lock.release()
        served = or_(
            ModelRow.champion_version.is_not(None),
            ModelRow.challenger_version.is_not(None),
            ModelRow.shadow_version.is_not(None),
        )
        query = select(ModelRow).where(served).order_by(ModelRow.name)
        if self.models:
            query = query.where(ModelRow.name.in_(self.models))
        with self.sessions() as session:
            rows = session.execute(query).scalars().all()
        return {row.name: deployment(row) for row in rows}

    def wait(self, timeout_s: float) -> None:
        """Block until a change is announced, `close` is called, or ``timeout_s`` passes."""
        self.wait_for_change(timeout_s)

    def wait_for_change(self, timeout_s: float) -> bool:
        """`wait`, saying why it returned: True only when a notification of a model this
        source watches woke it (False: timeout, close, SQLite, or LISTEN unavailable)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while self._listen_url is not None and not self._closed.is_set():
            with self._lock:
                conn = self._ensure_listening()
                if conn is not None:
                    if self._reconnected:  # announcements may have been missed meanwhile
                        self._reconnected = False
                        return False
                    try:
                        if self._await_notification(conn, deadline):
                            self.notifications += 1
                            return True
                        return False
                    except Exception as exc:  # any failure of the socket: retry, never raise
                        self.listen_outage.failed(exc)
                        self._drop()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._closed.wait(min(remaining, RECONNECT_S))
        self._closed.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        """Wake any `wait` and close the LISTEN connection."""
        self._closed.set()
        with self._lock:
            self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------
    def _await_notification(self, conn: psycopg.Connection, deadline: float) -> bool:
        while not self._closed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            slice_s = min(remaining, _SLICE_S)
            names = [n.payload for n in conn.notifies(timeout=slice_s, stop_after=1)]
            if names:
                # Changes announced together are read together: drain what else is queued.
                names += [n.payload for n in conn.notifies(timeout=0)]
                if not self.models or set(names) & set(self.models):
                    return True
        return False

    def _ensure_listening(self) -> psycopg.Connection | None:
        if self._listen_url is None or self._closed.is_set():
            return None
        if self._conn is not None and not self._conn.closed:
            return self._conn
        import psycopg

        conn: psycopg.Connection | None = None
        try:
            conn = psycopg.connect(
                self._listen_url,
                autocommit=True,  # LISTEN takes effect at once, and notifies() needs no tx
                connect_timeout=max(1, int(self._connect_timeout_s)),
                keepalives=1,  # notice a server that vanished without closing the socket
                keepalives_idle=30,
            )
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            self.listen_outage.failed(str(exc).strip().splitlines()[0] if str(exc) else exc)
            if conn is not None:
                conn.close()
            return None
        self._conn = conn
        self._reconnected = self.listen_outage.ok()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken socket can fail; it is gone either way
                log.debug("closing the LISTEN connection failed", exc_info=True)


def deployment(row: ModelRow) -> Deployment:
    """A model row as the serving tier's `Deployment`."""
    return Deployment(
        name=row.name,
        champion=row.champion_version,
        challenger=row.challenger_version,
        canary_percent=row.canary_percent or 0,
        shadow=row.shadow_version,
        revision=row.revision,
    )


def _engine_url(sessions: sessionmaker[Session]) -> str:
    bind = sessions.kw.get("bind")
    return bind.url.render_as_string(hide_password=False) if bind is not None else ""


def _libpq_url(url: str) -> str:
    """SQLAlchemy's ``postgresql+psycopg://...`` as the plain URI libpq (psycopg) takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
