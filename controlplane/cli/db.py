"""``mlcp db``: migrate the control-plane database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from controlplane.cli import Env, local_only
from controlplane.cli.output import emit_json, progress

if TYPE_CHECKING:
    from sqlalchemy import Engine


@click.group()
def db() -> None:
    """Create and migrate the control-plane database (Alembic, table mlcp_alembic_version)."""


def _engine(env: Env) -> Engine:
    from controlplane.db.engine import check_connection, make_engine

    engine = make_engine(env.settings.database_url, env.settings.db_connect_timeout_s)
    check_connection(engine)
    return engine


@db.command()
@click.argument("revision", default="head")
@local_only
def upgrade(env: Env, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    from controlplane.db import migrate

    engine = _engine(env)
    try:
        before = migrate.current_revision(engine)
        progress(f"upgrading control-plane database from {before or 'base'} to {revision}")
        migrate.upgrade(engine, revision)
        click.echo(f"at revision {migrate.current_revision(engine) or 'base'}")
    finally:
        engine.dispose()


@db.command()
@click.argument("revision")
@local_only
def downgrade(env: Env, revision: str) -> None:
    """Downgrade the schema to REVISION ('base' drops every mlcp table)."""
    from controlplane.db import migrate

    engine = _engine(env)
    try:
        migrate.downgrade(engine, revision)
        click.echo(f"at revision {migrate.current_revision(engine) or 'base'}")
    finally:
        engine.dispose()


@db.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@local_only
def current(env: Env, as_json: bool) -> None:
    """Show the schema's revision and the code's head revision."""
    from controlplane.db import migrate
    from controlplane.settings import redact_url

    engine = _engine(env)
    try:
        info: dict[str, Any] = {
            "database": redact_url(env.settings.database_url),
            "current": migrate.current_revision(engine),
            "head": migrate.head_revision(),
        }
    finally:
        engine.dispose()
    info["up_to_date"] = info["current"] == info["head"]
    if as_json:
        emit_json(info)
        return
    state = "up to date" if info["up_to_date"] else "behind: run `mlcp db upgrade`"
    click.echo(f"{info['database']}: {info['current'] or 'base'} (head {info['head']}, {state})")
