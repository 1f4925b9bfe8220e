"""Migrations run up and down on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from controlplane.db import migrate
from controlplane.db.engine import make_engine
from controlplane.db.models import VERSION_TABLE, Base
from controlplane.errors import SchemaOutOfDate

TABLES = {"mlcp_model_versions", "mlcp_audit_log", "mlcp_audit_head"}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    yield eng
    eng.dispose()


def tables(engine: sqlalchemy.Engine) -> set[str]:
    return set(sqlalchemy.inspect(engine).get_table_names())


def test_upgrade_to_head_then_downgrade_to_base(engine: sqlalchemy.Engine) -> None:
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert tables(engine) >= TABLES | {VERSION_TABLE}
    assert "alembic_version" not in tables(engine)  # MLflow's table name stays free

    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert not tables(engine) & TABLES

    migrate.upgrade(engine)  # and back up: downgrade left nothing behind that blocks it
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_models_match_migrations(engine: sqlalchemy.Engine) -> None:
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_fresh_database_is_created_and_stale_one_refused(engine: sqlalchemy.Engine) -> None:
    assert migrate.ensure_schema(engine) is True
    assert migrate.ensure_schema(engine) is False
    migrate.downgrade(engine, "base")
    with engine.begin() as conn:  # an mlcp table without a revision: not ours to guess
        conn.execute(sqlalchemy.text("CREATE TABLE mlcp_audit_log (seq INTEGER)"))
    with pytest.raises(SchemaOutOfDate, match="mlcp db upgrade"):
        migrate.ensure_schema(engine)


def test_shares_a_postgres_database_with_mlflow(pg_url: str) -> None:
    """Our version table and MLflow's live side by side in one database."""
    from registry.mlflow_backend import MlflowBackend

    MlflowBackend(pg_url)
    eng = make_engine(pg_url)
    try:
        mlflow_rev = _rev(eng, "alembic_version")
        migrate.upgrade(eng)
        assert migrate.current_revision(eng) == migrate.head_revision()
        assert _rev(eng, "alembic_version") == mlflow_rev
        migrate.downgrade(eng, "base")
        assert _rev(eng, "alembic_version") == mlflow_rev
    finally:
        eng.dispose()


def _rev(engine: sqlalchemy.Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sqlalchemy.text(f"SELECT version_num FROM {table}")).scalar_one())


def test_head_constant_names_the_newest_revision() -> None:
    """Opening an up-to-date database compares its version row with `migrations.HEAD`
    (no alembic import); a new revision must update the constant."""
    import migrations

    assert migrate.head_revision() == migrations.HEAD
