"""Fixtures: a real SQLite database migrated with the store's migrations, and an app on it with a signed-in user.

The weekly-report numbers are also checked on PostgreSQL, with the store tests' throwaway server fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from carspot.dashboards.accounts import Accounts
from carspot.dashboards.auth import AuthOptions
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


CHEAP_HASHER = PasswordHasher.from_parameters(CHEAPEST)
"""argon2 at its cheapest: tests sign in often, and the production cost (about a second here) proves nothing."""
PASSWORD = "correct horse battery"


def auth_options(**changes: object) -> AuthOptions:
    """Sign-in options for tests: the cheap hasher, the rest as given."""
    return AuthOptions(hasher=CHEAP_HASHER, **changes)  # type: ignore[arg-type]


def add_user(engine: Engine, name: str, *, role: str = "viewer", password: str = PASSWORD) -> None:
    Accounts(engine, hasher=CHEAP_HASHER).add_user(name, role=role, password=password, now=NOW)


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> None:
    """Sign in as a browser does: fetch the form (its CSRF cookie and field), post it, keep the session cookie."""
    form = client.get("/login")
    assert form.status_code == 200, form.text[:300]
    token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post(
        "/login", data={"name": name, "password": password, "csrf_token": token, "next": "/"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text[:300]
    assert "carspot_session" in client.cookies


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient for an app on an engine, with the clock fixed at NOW, signed in as an admin unless
    ``signed_in=False`` (or as ``role``); ``raise_server_exceptions`` as TestClient's; other options go to
    ``create_app``."""
    clients: list[TestClient] = []

    def build(
        engine: Engine,
        *,
        signed_in: bool = True,
        role: str = "admin",
        raise_server_exceptions: bool = True,
        auth: AuthOptions | None = None,
        **app_options: Any,
    ) -> TestClient:
        app = create_app(engine=engine, clock=lambda: NOW, auth=auth or auth_options(), **app_options)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        clients.append(client)
        if signed_in:
            name = f"test-{role}"
            add_user(engine, name, role=role)
            sign_in(client, name)
        return client

    yield build
    for c in clients:
        c.close()


@pytest.fixture
def client(engine: Engine, make_client: Callable[..., TestClient]) -> TestClient:
    """Signed in as an admin."""
    return make_client(engine)
