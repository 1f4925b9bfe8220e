"""Alembic environment. Run through ``mlcp db upgrade``; plain ``alembic`` works too.

The engine comes from ``controlplane.db.migrate`` (``config.attributes["engine"]``); when
alembic is run by hand, the URL comes from mlcp's settings (``MLCP_DATABASE_URL``).
"""

from __future__ import annotations

from alembic import context

from controlplane.db.models import VERSION_TABLE, Base

config = context.config


def _engine():  # type: ignore[no-untyped-def]
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from controlplane.db.engine import make_engine
    from controlplane.settings import load_settings

    return make_engine(load_settings().database_url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
