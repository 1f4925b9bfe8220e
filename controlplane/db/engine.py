"""Engines for the control-plane database: SQLite (embedded) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from controlplane.errors import DatabaseUnavailable
from controlplane.settings import redact_url

SQLITE_BUSY_TIMEOUT_S = 30


def make_engine(
    url: str, connect_timeout_s: float = 5.0, statement_timeout_s: float = 0.0
) -> Engine:
    """An engine that serializes writers correctly on SQLite and fails fast on PostgreSQL:
    connections time out after ``connect_timeout_s`` and, when ``statement_timeout_s`` is set,
    so does every statement (and every wait for a lock)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout_s))}
    if statement_timeout_s > 0:
        ms = max(1, int(statement_timeout_s * 1000))
        connect_args["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def check_connection(engine: Engine) -> None:
    """Raise DatabaseUnavailable, naming the URL (password masked), when it can't be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(redact_url(engine.url.render_as_string(False)), why) from exc


def _sqlite_engine(url: str) -> Engine:
    database = url.split("///", 1)[1] if "///" in url else ""
    if database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(url, f"cannot create {Path(database).parent}") from exc
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so BEGIN IMMEDIATE below is honoured.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write lock at BEGIN: read-then-write transactions (the audit chain's head,
        # idempotency checks) can't interleave, and waiters queue on the busy timeout
        # instead of failing with "database is locked" on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
