"""Insert-if-missing on SQLite and PostgreSQL alike, for rows that are then locked."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_if_missing(session: Session, table: Any, key: str, **values: Any) -> None:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``: concurrent first writers don't collide."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=[key]))
