"""Fixtures: every store test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``CARSPOT_TEST_DATABASE_URL`` when set (CI starts the project's services), else from a
throwaway server started here on a free loopback port and stopped at the end of the session. Either way each
test gets a database of its own, created and dropped around it, so the named database itself is never
touched (the URL's role needs CREATEDB). If PostgreSQL cannot be had the tests FAIL, never skip: a store that
was only tested on SQLite is not tested.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from carspot.store.engine import create_engine_for, normalize_url
from carspot.store.migrate import migrate

ENV_URL = "CARSPOT_TEST_DATABASE_URL"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
PG_START_TIMEOUT_S = 60


def _pg_bin_dir() -> Path:
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    candidates = [Path(d) for d in PG_BIN_DIRS] + installed
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    pytest.fail(
        "PostgreSQL binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH: install "
        f"Debian's postgresql-15, or set {ENV_URL} to a server the tests may create databases on",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(cmd: list[str]) -> str | None:
    """Run a PostgreSQL tool (as root: as ``postgres``, which the server insists on); the error, if any."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PG_START_TIMEOUT_S + 30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(cmd)}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return None


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[URL]:
    """A PostgreSQL server URL (maintenance database ``postgres``) for the whole test session."""
    given = os.environ.get(ENV_URL)
    if given:
        url = normalize_url(given)
        if url.get_backend_name() != "postgresql":
            pytest.fail(f"{ENV_URL} must be a postgresql:// URL, got {url.render_as_string()}", pytrace=False)
        yield url
        return

    bin_dir = _pg_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="carspot-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    data, log = root / "data", root / "server.log"
    port = _free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off"
    start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w"]
    error = _run([*initdb, "--no-sync"]) or _run([*start, "-t", str(PG_START_TIMEOUT_S), "start"])
    if error is not None:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no server log)"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(
            f"could not start a throwaway PostgreSQL on 127.0.0.1:{port} (set {ENV_URL} to use a running "
            f"server instead):\n{error}\nserver log:\n{tail}",
            pytrace=False,
        )
    try:
        yield URL.create("postgresql+psycopg", username="postgres", host="127.0.0.1", port=port, database="postgres")
    finally:
        error = _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
        if error is not None:
            pytest.fail(f"could not stop the throwaway PostgreSQL: {error}", pytrace=False)


@pytest.fixture
def postgres_url(postgres_server_url: URL) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"carspot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"cannot create a test database on {postgres_server_url.render_as_string()}: {exc}", pytrace=False)
    try:
        yield postgres_server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'carspot.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    migrate(db_url)
    eng = create_engine_for(db_url)
    try:
        yield eng
    finally:
        eng.dispose()
