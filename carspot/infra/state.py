"""`root/services.json`: what `up` chose and started (ports, pids, the database password), so later runs reuse
the same ports and `down` stops only the processes recorded here. Written atomically with mode 0600."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

STATE_FILE = "services.json"
ENV_FILE = "services.env"
_LOCK_FILE = ".services.lock"
_VERSION = 1

_T = TypeVar("_T")


@dataclass
class KafkaState:
    port: int
    controller_port: int
    cluster_id: str
    version: str
    pid: int | None = None


@dataclass
class PostgresState:
    port: int
    password: str
    data_dir: str
    socket_dir: str | None
    run_as: str | None
    bin_dir: str | None = None
    note: str | None = None
    pid: int | None = None


@dataclass
class RedisState:
    port: int
    pid: int | None = None


@dataclass
class State:
    kafka: KafkaState | None = None
    postgresql: PostgresState | None = None
    redis: RedisState | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {"version": _VERSION}
        for name in ("kafka", "postgresql", "redis"):
            value = getattr(self, name)
            data[name] = dataclasses.asdict(value) if value is not None else None
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValueError(f"unsupported {STATE_FILE} (version {data.get('version')!r})")
        return cls(
            kafka=_build(KafkaState, data.get("kafka")),
            postgresql=_build(PostgresState, data.get("postgresql")),
            redis=_build(RedisState, data.get("redis")),
        )


def _build(kind: type[_T], value: object) -> _T | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"bad {kind.__name__} entry in {STATE_FILE}")
    names = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    return kind(**{key: val for key, val in value.items() if key in names})


def load(root: Path) -> State:
    """The recorded state, or an empty one on the first run."""
    path = root / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return State()
    return State.from_json(text)


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, readable by its owner only (it holds a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def save(root: Path, state: State) -> None:
    write_private(root / STATE_FILE, state.to_json())


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one root (two CLIs at once would start two of everything)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
