"""Alembic, driven from code: ``mlcp db upgrade`` / ``downgrade`` / ``current``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

import migrations
from controlplane.db.models import VERSION_TABLE
from controlplane.errors import SchemaOutOfDate

if TYPE_CHECKING:  # alembic is imported only to migrate: opening an up-to-date database
    from alembic.config import Config  # reads the version row with one SELECT


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine, auto_create: bool = True) -> bool:
    """Create a fresh database's schema; refuse a stale one. Returns True when it created it.

    A database with no mlcp tables yet is upgraded to head (as MLflow does with its own);
    one at an older revision is left alone: upgrading a shared database is an operator's
    decision, taken with `mlcp db upgrade`.
    """
    if _stored_revision(engine) == migrations.HEAD:  # the usual case, without alembic
        return False
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return False
    if current is None and auto_create and not _has_mlcp_tables(engine):
        upgrade(engine)
        return True
    raise SchemaOutOfDate(current, head)


def _has_mlcp_tables(engine: Engine) -> bool:
    names = set(inspect(engine).get_table_names())
    return any(name.startswith("mlcp_") and name != VERSION_TABLE for name in names)


def _stored_revision(engine: Engine) -> str | None:
    """The version table's one row, read directly; None when there is none (yet)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    except (OperationalError, ProgrammingError):  # no such table: a fresh database
        return None
    return str(rows[0][0]) if len(rows) == 1 else None
