"""services.json and services.env, error messages, traversal checks, `down` never signalling a stranger."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from carspot.infra import state
from carspot.infra.errors import ServiceStartError
from carspot.infra.postgres import blocking_parent, can_search, database_url, render_conf
from carspot.infra.procs import RunAs, is_alive, is_ours
from carspot.infra.services import Endpoints, down, status, write_env_file
from carspot.infra.state import KafkaState, PostgresState, RedisState, State

NOBODY = RunAs(name="nobody", uid=65534, gid=65534, groups=(), home="/nonexistent")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    st = State(
        kafka=KafkaState(port=1, controller_port=2, cluster_id="abc", version="4.3.1", pid=10),
        postgresql=PostgresState(
            port=3, password="s3cret", data_dir="/d", socket_dir=None, run_as="postgres", note="why"
        ),
        redis=RedisState(port=4),
    )
    state.save(tmp_path, st)
    assert state.load(tmp_path) == st
    assert _mode(tmp_path / state.STATE_FILE) == 0o600
    assert state.load(tmp_path / "elsewhere") == State()


def test_env_file_has_the_three_settings_and_is_private(tmp_path: Path) -> None:
    url = database_url(port=5432, password="p-w_d")
    endpoints = Endpoints("127.0.0.1:9092", url, "redis://127.0.0.1:6379/0")
    path = tmp_path / "services.env"
    write_env_file(endpoints, path)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines == [
        "CARSPOT_KAFKA_BOOTSTRAP=127.0.0.1:9092",
        "CARSPOT_DATABASE_URL=postgresql+psycopg://carspot:p-w_d@127.0.0.1:5432/carspot",
        "CARSPOT_REDIS_URL=redis://127.0.0.1:6379/0",
    ]
    assert _mode(path) == 0o600


def test_postgres_conf_is_loopback_only() -> None:
    conf = render_conf(port=5555, socket_dir=Path("/r/run"))
    assert "listen_addresses = '127.0.0.1'" in conf
    assert "port = 5555" in conf
    assert "unix_socket_directories = '/r/run'" in conf
    assert "unix_socket_directories = ''" in render_conf(port=1, socket_dir=None)


def test_error_names_the_service_and_carries_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(500)) + "FATAL the real reason\n")
    err = ServiceStartError("kafka", "exited during start-up", logs=[log, tmp_path / "missing.log"])
    text = str(err)
    assert text.startswith("kafka: exited during start-up")
    assert "FATAL the real reason" in text
    assert "line 3\n" not in text  # a tail, not the whole file
    assert err.service == "kafka"


def test_traversal_check_finds_the_closed_parent() -> None:
    # Under the system temp dir rather than tmp_path: pytest's own base dir is 0700, which would block first.
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        closed = base / "closed"
        inner = closed / "a" / "b"
        inner.mkdir(parents=True)
        os.chmod(closed, 0o700)
        assert not can_search(closed, NOBODY)
        assert blocking_parent(inner / "postgres", NOBODY) == closed
        os.chmod(closed, 0o711)
        assert can_search(closed, NOBODY)
        assert blocking_parent(inner / "postgres", NOBODY) is None
        root_user = RunAs(name="root", uid=0, gid=0, groups=(), home="/root")
        os.chmod(closed, 0o700)
        assert blocking_parent(inner / "postgres", root_user) is None


def test_down_leaves_a_process_it_did_not_start(tmp_path: Path) -> None:
    """A recorded pid whose command line is not our broker's (e.g. recycled) is never signalled."""
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        st = State(
            kafka=KafkaState(port=1, controller_port=2, cluster_id="x", version="4", pid=stranger.pid),
            redis=RedisState(port=3, pid=stranger.pid),
        )
        state.save(tmp_path, st)
        assert not is_ours(stranger.pid, ["kafka.Kafka"])
        assert status(root=tmp_path)["kafka"].running is False
        assert down(root=tmp_path) == []
        assert is_alive(stranger.pid) and stranger.poll() is None
        after = state.load(tmp_path)
        assert after.kafka is not None and after.kafka.pid is None  # the stale pid is dropped
    finally:
        stranger.kill()
        stranger.wait()


def test_down_and_status_on_an_empty_root(tmp_path: Path) -> None:
    assert down(root=tmp_path / "never-used") == []
    assert not (tmp_path / "never-used").exists()
    statuses = status(root=tmp_path / "never-used")
    assert set(statuses) == {"kafka", "postgresql", "redis"}
    assert not any(s.running or s.pid or s.endpoint for s in statuses.values())
