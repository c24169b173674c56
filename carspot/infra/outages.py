"""Real outages, injected into the services that ``up`` started under a root of their own: for the fault
suite and ``bench/chaos.py``. Never point it at the services others use: it stops and kills them."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from carspot.infra import postgres
from carspot.infra import state as state_file
from carspot.infra.procs import is_alive, wait_until
from carspot.infra.services import Endpoints, down, up


@dataclass
class PrivateStack:
    """Kafka, PostgreSQL and Redis on free loopback ports with their data under ``root``."""

    root: Path
    topics: Mapping[str, int]
    endpoints: Endpoints = field(init=False)

    def __post_init__(self) -> None:
        self.endpoints = up(root=self.root, topics=self.topics)

    def restart(self) -> None:
        """Start again whatever is not running (same ports, same data): the end of an outage."""
        self.endpoints = up(root=self.root, topics=self.topics)

    def stop_postgres(self) -> None:
        """``pg_ctl stop -m fast``: every connection is cut, new ones are refused."""
        with state_file.locked(self.root):
            st = state_file.load(self.root)
            if st.postgresql is None:
                raise RuntimeError(f"no PostgreSQL recorded under {self.root}")
            user = postgres.system_user(create=False) if st.postgresql.run_as else None
            postgres.stop(st.postgresql, user)

    def kill_kafka(self, *, timeout_s: float = 30.0) -> None:
        """SIGKILL the broker (no controlled shutdown, as when its machine dies) and wait until it is gone."""
        st = state_file.load(self.root)
        if st.kafka is None or st.kafka.pid is None or not is_alive(st.kafka.pid):
            raise RuntimeError(f"no running broker recorded under {self.root}")
        pid = st.kafka.pid
        os.kill(pid, signal.SIGKILL)
        if not wait_until(lambda: not is_alive(pid), timeout_s=timeout_s):
            raise RuntimeError(f"broker pid {pid} still alive {timeout_s:.0f} s after SIGKILL")

    def stop(self) -> list[str]:
        """Stop all three, and remove the PostgreSQL cluster ``up`` had to place outside ``root`` (a root its
        system user cannot reach), so a temporary stack leaves nothing behind."""
        stopped = down(root=self.root)
        st = state_file.load(self.root)
        if st.postgresql is not None and st.postgresql.note:
            per_root = Path(st.postgresql.data_dir).parent.parent  # FALLBACK_BASE/<digest of root>
            if per_root.is_relative_to(postgres.FALLBACK_BASE) and per_root != postgres.FALLBACK_BASE:
                shutil.rmtree(per_root, ignore_errors=True)
        return stopped


__all__ = ["PrivateStack"]
