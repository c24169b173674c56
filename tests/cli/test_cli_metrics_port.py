"""A process given a metrics port another process holds stops at start-up with one error line (exit 2), before it
loads models or reads a post: it never runs unobserved."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carspot.cli.main import app
from carspot.pipeline import logs
from carspot.store.migrate import migrate


@pytest.fixture
def taken_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[int]:
    monkeypatch.setattr(logs, "configure_logging", lambda **_: None)  # in-process: keep the tests' logging
    monkeypatch.setenv("CARSPOT_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'carspot.db'}"
    migrate(url)
    monkeypatch.setenv("CARSPOT_DATABASE_URL", url)
    monkeypatch.setenv("CARSPOT_KAFKA_BOOTSTRAP", "127.0.0.1:9")  # never reached: the port check comes first
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        monkeypatch.setenv("CARSPOT_METRICS_PORT", str(port))
        yield port


@pytest.mark.parametrize("command", [["worker", "--timeout", "1"], ["dashboard"]])
def test_a_taken_metrics_port_is_one_error_line_and_exit_2(taken_port: int, command: list[str]) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert f"error: cannot export metrics on 127.0.0.1:{taken_port}" in result.output
    assert "CARSPOT_METRICS_INDEX" in result.output
