"""Alembic environment of the store: run by ``carspot.store.migrate``, or by the ``alembic`` CLI for authors.

``migrate()`` hands over its open connection (already in a transaction) through ``config.attributes``. The
CLI (``alembic -c carspot/store/alembic.ini -x url=sqlite:///x.db revision --autogenerate -m ...``) takes the
URL from ``-x url=`` or ``sqlalchemy.url``. SQLite cannot ALTER most things, so it gets batch mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from carspot.store.engine import create_engine_for
from carspot.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate over the connection ``migrate()`` gave, or over a new one for the CLI."""
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = create_engine_for(_url(), pool_size=1)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
