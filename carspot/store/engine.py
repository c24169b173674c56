"""Engines for the two supported backends, each set up the way the store relies on.

SQLite (the embedded default) gets WAL (readers do not block the writer), enforced foreign keys, a busy
timeout (a second writer waits instead of failing at once) and real ``BEGIN``/``COMMIT`` transactions, so a
batch and a migration are all-or-nothing. PostgreSQL gets ``pool_pre_ping`` so a restarted server costs one
reconnect, not one failed batch.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

SUPPORTED_BACKENDS: Final = frozenset({"sqlite", "postgresql"})
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

SQLITE_BEGIN_OPTION: Final = "carspot_sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` flavour of a connection; writers ask for ``IMMEDIATE``.

``BEGIN IMMEDIATE`` takes the write lock up front (waiting up to the busy timeout), so a transaction that
reads before it writes cannot fail with ``SQLITE_BUSY`` half-way; it is ignored on PostgreSQL.
"""


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a bare ``postgresql://`` means psycopg 3, the driver the project installs."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql:// URLs")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")


def create_engine_for(url: str, *, pool_size: int = 5) -> Engine:
    """An Engine for a ``sqlite:///path`` or ``postgresql://`` URL, configured for the store.

    An in-memory SQLite database lives in one shared connection (so every user sees the same data); pass
    that engine to :func:`carspot.store.migrate.migrate` rather than the URL.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_size=pool_size, pool_pre_ping=True)

    if _is_memory_sqlite(parsed):
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(parsed, pool_size=pool_size)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """Pragmas per connection, and transactions emitted by SQLAlchemy rather than guessed by pysqlite.

    pysqlite's own transaction handling starts transactions only before DML and commits before DDL, which
    would make migrations non-atomic; this is the recipe from SQLAlchemy's SQLite dialect documentation.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by the driver
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        flavour = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if flavour not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be DEFERRED, IMMEDIATE or EXCLUSIVE, not {flavour!r}")
        connection.exec_driver_sql(f"BEGIN {flavour}")
