"""Fixtures: a real SQLite database migrated with the store's migrations, and an app on it.

The weekly-report numbers are also checked on PostgreSQL, with the store tests' throwaway server fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from carspot.dashboards.web import create_app
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from tests.store.conftest import postgres_server_url, postgres_url  # noqa: F401  (fixtures, re-exported)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
"""The tests' "now": Wednesday of ISO week 2026-W48, so the last complete week is 2026-W47."""


def _migrated(url: str) -> Iterator[Engine]:
    migrate(url)
    engine = create_engine_for(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty SQLite database migrated to head."""
    yield from _migrated(f"sqlite:///{tmp_path / 'carspot.db'}")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database migrated to head, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'carspot.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from _migrated(url)


@pytest.fixture
def make_client() -> Iterator[Callable[[Engine], TestClient]]:
    """Build a TestClient for an app on an engine, with the clock fixed at NOW."""
    clients: list[TestClient] = []

    def build(engine: Engine) -> TestClient:
        client = TestClient(create_app(engine=engine, clock=lambda: NOW), raise_server_exceptions=True)
        clients.append(client)
        return client

    yield build
    for c in clients:
        c.close()


@pytest.fixture
def client(engine: Engine, make_client: Callable[[Engine], TestClient]) -> TestClient:
    return make_client(engine)
