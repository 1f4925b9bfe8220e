"""Alembic, driven from code: ``mlcp db upgrade`` / ``downgrade`` / ``current``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

import migrations
from controlplane.db.models import VERSION_TABLE
from controlplane.errors import SchemaOutOfDate


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine, auto_create: bool = True) -> bool:
    """Create a fresh database's schema; refuse a stale one. Returns True when it created it.

    A database with no mlcp tables yet is upgraded to head (as MLflow does with its own);
    one at an older revision is left alone: upgrading a shared database is an operator's
    decision, taken with `mlcp db upgrade`.
    """
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
