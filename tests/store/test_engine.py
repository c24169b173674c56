"""Engines are set up the way the store relies on; PostgreSQL missing makes the tests fail, not skip."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import IntegrityError

from carspot.store.engine import create_engine_for, normalize_url
from carspot.store.tables import Post

from .data import sha


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    """A post cannot point at an image the store does not have, on SQLite too."""
    row = {
        "post_id": "p",
        "source": "s",
        "ingested_at": datetime(2025, 1, 1, tzinfo=UTC),
        "image_sha256": sha("nowhere"),
    }
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(Post), [row])


def test_sqlite_transactions_cover_ddl(tmp_path: Path) -> None:
    """pysqlite would commit before DDL by itself; the engine's own BEGIN makes DDL roll back too."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            raise RuntimeError("abort")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 't'").scalar() == 0
    finally:
        engine.dispose()


def test_urls() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        create_engine_for("mysql://u@h/db")


def test_postgresql_engine_pings_its_pool() -> None:
    engine = create_engine_for("postgresql://u@127.0.0.1:1/db", pool_size=3)
    try:
        assert engine.pool._pre_ping
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_an_unreachable_postgresql_fails_the_tests_instead_of_skipping(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    env = os.environ | {"CARSPOT_TEST_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"}
    test = f"{Path(__file__).parent / 'test_migrations.py'}::test_migration_matches_the_models[postgresql]"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode != 0, done.stdout
    assert "skipped" not in done.stdout
    assert "cannot create a test database" in done.stdout
