"""A private Kafka, PostgreSQL and Redis for the outage tests, started with the project's own infra code under
a temporary root on free loopback ports, so stopping or killing one never touches the services others use."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from carspot.infra import postgres
from carspot.infra import state as state_file
from carspot.infra.procs import is_alive, wait_until
from carspot.infra.services import Endpoints, down, up

POSTS_TOPIC, DLQ_TOPIC = "carspot.posts", "carspot.posts.dlq"


@dataclass
class PrivateStack:
    root: Path
    endpoints: Endpoints

    @classmethod
    def start(cls, root: Path) -> PrivateStack:
        return cls(root, up(root=root, topics={POSTS_TOPIC: 2, DLQ_TOPIC: 1}))

    def restart(self) -> None:
        """Start again whatever is not running (same ports, same data): the end of an outage."""
        self.endpoints = up(root=self.root, topics={POSTS_TOPIC: 2, DLQ_TOPIC: 1})

    def stop_postgres(self) -> None:
        """pg_ctl stop -m fast: every connection is cut, new ones are refused."""
        with state_file.locked(self.root):
            st = state_file.load(self.root)
            assert st.postgresql is not None
            user = postgres.system_user(create=False) if st.postgresql.run_as else None
            postgres.stop(st.postgresql, user)

    def kill_kafka(self) -> None:
        """SIGKILL the broker: no controlled shutdown, as when a machine dies."""
        st = state_file.load(self.root)
        assert st.kafka is not None and st.kafka.pid is not None
        pid = st.kafka.pid
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not is_alive(pid), timeout_s=30)

    def stop(self) -> None:
        down(root=self.root)
