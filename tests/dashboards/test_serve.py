"""``serve`` runs the app under uvicorn on a loopback port and stops cleanly on SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from carspot.store.migrate import migrate
from tests.conftest import REPO_ROOT

SCRIPT = """
import sys
from carspot.dashboards.web import serve
from carspot.store.engine import create_engine_for
engine = create_engine_for(sys.argv[1])
try:
    serve(engine=engine, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
finally:
    engine.dispose()
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_answers_and_stops_on_sigint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'carspot.db'}"
    migrate(url)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, url, str(port)], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx2.TransportError:
                assert proc.poll() is None, "serve exited early"
                assert time.monotonic() < deadline, "serve did not start listening within 30 s"
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "database": "sqlite"}
        assert "server" not in r.headers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
