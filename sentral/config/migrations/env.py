"""Alembic environment: runs the package's migrations on the connection ``db.migrate`` hands in.

``sentral init`` migrates programmatically and passes its open connection through
``config.attributes``; running ``alembic`` by hand instead needs ``sqlalchemy.url`` set in its
configuration, and then this module opens an engine of its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from sentral.config.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most constraints in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the given connection, or an engine built from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or migrate with `sentral init`")
    engine = create_engine(url)
    try:
        with engine.connect() as fresh:
            _run(fresh)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("sentral migrations run online only; use `sentral init`")
run_migrations_online()
