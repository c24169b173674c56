"""Redis from Debian's redis-server package on loopback, with an append-only file under ROOT/redis: the
de-duplication claims must survive a restart, or a replay after one would send every post again (as the
docker-compose service does)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from carspot.infra.errors import ServiceStartError
from carspot.infra.install import require_binary
from carspot.infra.ports import LOOPBACK, port_answers
from carspot.infra.procs import exit_code, is_alive, is_ours, spawn_detached, terminate
from carspot.infra.state import RedisState

log = logging.getLogger(__name__)

SERVICE = "redis"


@dataclass(frozen=True)
class RedisPaths:
    home: Path

    @classmethod
    def under(cls, root: Path) -> RedisPaths:
        return cls(home=root / "redis")

    @property
    def log(self) -> Path:
        return self.home / "redis.log"

    @property
    def out_log(self) -> Path:
        return self.home / "redis.out"

    @property
    def logs(self) -> tuple[Path, Path]:
        return (self.out_log, self.log)


def redis_url(*, port: int, host: str = LOOPBACK) -> str:
    return f"redis://{host}:{port}/0"


def command(binary: str, paths: RedisPaths, *, port: int, host: str = LOOPBACK) -> list[str]:
    """The redis-server argv: AOF persistence (fsync every second), no daemonizing (we keep the pid), data and
    logs under ROOT/redis."""
    return [
        binary,
        "--bind", host,
        "--port", str(port),
        "--dir", str(paths.home),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--logfile", str(paths.log),
    ]  # fmt: skip


def markers(state: RedisState) -> list[str]:
    """Redis rewrites its process title to "redis-server 127.0.0.1:PORT" (else its argv has "--port PORT")."""
    return ["redis-server", str(state.port)]


def is_ours_alive(state: RedisState) -> bool:
    """The recorded redis-server is alive (it may still be starting)."""
    return is_ours(state.pid, markers(state))


def is_running(state: RedisState) -> bool:
    """Alive and accepting connections."""
    return is_ours_alive(state) and port_answers(state.port)


def launch(state: RedisState, paths: RedisPaths, *, install: bool) -> int:
    binary = require_binary("redis-server", package="redis-server", service=SERVICE, install=install)
    paths.home.mkdir(parents=True, exist_ok=True)
    pid = spawn_detached(command(binary, paths, port=state.port), log_path=paths.out_log, cwd=paths.home)
    log.info("redis starting (pid %s) on %s:%s", pid, LOOPBACK, state.port)
    return pid


def wait_ready(state: RedisState, paths: RedisPaths, *, timeout_s: float) -> None:
    """Until PING answers PONG (bounded); ServiceStartError if the server exits or never answers."""
    import redis

    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while True:
        if state.pid is None or not is_alive(state.pid):
            code = exit_code(state.pid) if state.pid is not None else None
            how = f" with code {code}" if code is not None else ""
            raise ServiceStartError(SERVICE, f"redis-server (pid {state.pid}) exited{how}", logs=paths.logs)
        client = redis.Redis(host=LOOPBACK, port=state.port, socket_connect_timeout=1, socket_timeout=1)
        try:
            if client.ping():
                return
        except redis.RedisError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        if time.monotonic() >= deadline:
            raise ServiceStartError(SERVICE, f"no PONG after {timeout_s:.0f}s ({last_error})", logs=paths.logs)
        time.sleep(0.2)


def stop(state: RedisState) -> bool:
    """SIGTERM (then SIGKILL) the recorded redis-server; True if it was running."""
    if not is_ours(state.pid, markers(state)):
        return False
    assert state.pid is not None
    log.info("stopping redis (pid %s)", state.pid)
    terminate(state.pid, grace_s=15.0)
    return True
