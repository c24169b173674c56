"""One database whatever the order of commands (issue 26): after `carspot services down`, `carspot run` and
`carspot dashboard` use the same database, and every command says which at start-up, without the password.

What `carspot services up` leaves behind is made here with its own writers (services.json, services.env) for a
PostgreSQL that is not running, as after a crash: starting a real one is `tests/infra/test_services_live.py`'s
job, which also checks that a real `down` removes services.env."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from carspot.cli.main import app
from carspot.infra import state
from carspot.infra.services import Endpoints, write_env_file
from carspot.infra.state import PostgresState, State

CARSPOT = str(Path(sys.executable).with_name("carspot"))
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _env(tmp_path: Path, shared_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")}
    env.update(
        CARSPOT_DATA_DIR=str(tmp_path / ".carspot"), CARSPOT_SHARED_DIR=str(shared_dir), CARSPOT_LOG_LEVEL="WARNING"
    )
    return env


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CARSPOT_")}
    result = CliRunner().invoke(app, list(args), input=stdin, env={**unset, **env})
    return result.exit_code, result.stdout, result.stderr


def _left_by_up_then_a_crash(services: Path) -> str:
    """services.json and services.env as `up` writes them, for a PostgreSQL that is no longer running."""
    port = _free_port()
    state.save(
        services,
        State(
            postgresql=PostgresState(
                port=port, password="s3cret-pw", data_dir=str(services / "pg"), socket_dir=None, run_as=None
            )
        ),
    )
    url = f"postgresql+psycopg://carspot:s3cret-pw@127.0.0.1:{port}/carspot"
    write_env_file(Endpoints("127.0.0.1:1", url, "redis://127.0.0.1:1/0"), services / state.ENV_FILE)
    return url


def test_services_down_then_run_then_dashboard_use_one_database(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _env(tmp_path, shared_dir)
    services = tmp_path / ".carspot" / "services"
    pg_url = _left_by_up_then_a_crash(services)

    # While services.env is there, every command uses that PostgreSQL, says so, and says it is not running.
    code, _, err = _cli(env, "report", "weekly")
    assert code != 0
    assert f"database: {pg_url.replace('s3cret-pw', '***')} (" in err
    assert "not running" in err and "s3cret-pw" not in err
    assert "error: cannot read the database (OperationalError)" in err and "Traceback" not in err

    code, _, _ = _cli(env, "services", "down")
    assert code == 0
    assert not (services / state.ENV_FILE).exists()

    sqlite = f"sqlite:///{(tmp_path / '.carspot').resolve()}/carspot.db"
    folder = tmp_path / "posts"
    folder.mkdir()
    for name in ("bus.jpg", "dog.jpg"):
        shutil.copy(shared_dir / "data" / "scenes" / name, folder / name)
    code, out, err = _cli(env, "run", "--source", f"folder:{folder}")
    assert code == 0, err
    assert f"database: {sqlite} (the default" in err
    assert f"results         {sqlite}" in out

    code, _, err = _cli(env, "users", "add", "ann", "--password-stdin", stdin=PASSWORD)
    assert code == 0 and f"database: {sqlite}" in err
    code, token, _ = _cli(env, "users", "token", "ann")
    assert code == 0

    port = _free_port()
    dashboard = subprocess.Popen(
        [CARSPOT, "dashboard", "--port", str(port)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx2.TransportError:
                assert dashboard.poll() is None, "the dashboard exited"
                assert time.monotonic() < deadline, "the dashboard did not listen within 60 s"
                time.sleep(0.3)
        assert health.json() == {"status": "ok", "database": "sqlite"}
        summary = httpx2.get(
            f"http://127.0.0.1:{port}/api/summary", headers={"Authorization": f"Bearer {token.strip()}"}, timeout=10
        )
        assert summary.status_code == 200
        assert summary.json()["totals"]["posts"] == 2  # what `carspot run` wrote
    finally:
        dashboard.send_signal(signal.SIGINT)
        try:
            _, err = dashboard.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            _, err = dashboard.communicate()
    assert f"database: {sqlite} (the default" in err
