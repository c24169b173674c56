"""Run the Alembic migrations shipped inside this package, configured in code (no ``alembic.ini`` needed).

Start-up migrates explicitly (``migrate(url)``) before workers start. The whole upgrade runs in one
transaction, which both backends make transactional for DDL, so a failed migration leaves the schema as it
was; on PostgreSQL an advisory lock makes concurrent start-ups migrate one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from carspot.store.engine import SQLITE_BEGIN_OPTION, create_engine_for

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK: Final = 0x43_41_52_53_50_4F_54  # "CARSPOT": any constant shared by all processes


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged scripts; ``connection`` is used by ``env.py`` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _engine_for(url: str | Engine) -> Iterator[Engine]:
    """Use a given Engine as is; create (and dispose of) one for a URL."""
    if isinstance(url, Engine):
        yield url
        return
    engine = create_engine_for(url, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


def migrate(url: str | Engine, *, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (or behind an Engine, e.g. in-memory SQLite) to ``revision``."""
    with (
        _engine_for(url) as engine,
        engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) as conn,
        conn.begin(),
    ):
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        command.upgrade(alembic_config(conn), revision)


def downgrade(url: str | Engine, *, revision: str) -> None:
    """Downgrade to ``revision`` (``"base"`` drops every table); for tests and rollbacks by hand."""
    with (
        _engine_for(url) as engine,
        engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) as conn,
        conn.begin(),
    ):
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        command.downgrade(alembic_config(conn), revision)


def current_revision(url: str | Engine) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    with _engine_for(url) as engine, engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped; start-up can refuse to run against an older or newer schema."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration found in {MIGRATIONS_DIR}")
    return head
