"""De-duplication claims: first caller wins, releases undo, and a Redis outage degrades (logged once) instead
of stopping ingest. The Redis tests use a real redis-server on a loopback port, started here."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from carspot.ingest.dedup import InMemoryDeduplicator, RedisDeduplicator

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A throw-away redis-server on loopback, without persistence; stopped by the fixture."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self._folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.fail(f"redis-server not found at {REDIS_SERVER}")
    server = RedisServer(free_port(), tmp_path)
    try:
        yield server
    finally:
        server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- in memory ------------------------------------------------------------------------------------------


def test_in_memory_first_claim_wins_and_release_undoes_it() -> None:
    dedup = InMemoryDeduplicator()
    assert dedup.claim_post("p1") and not dedup.claim_post("p1")
    assert dedup.claim_image("p1"), "posts and pictures are separate namespaces"
    assert not dedup.claim_image("p1")
    dedup.release(post_id="p1", sha256="p1")
    assert dedup.claim_post("p1") and dedup.claim_image("p1")
    dedup.release(post_id="never-claimed")  # harmless
    assert not dedup.degraded


def test_in_memory_is_bounded_and_forgets_the_least_recently_seen() -> None:
    dedup = InMemoryDeduplicator(max_entries=2)
    assert dedup.claim_post("a") and dedup.claim_post("b")
    assert not dedup.claim_post("a")  # "a" is now the most recently seen
    assert dedup.claim_post("c")  # evicts "b"
    assert dedup.entries == 2 and bool(InMemoryDeduplicator()), "never falsy, even empty"
    assert not dedup.claim_post("a")
    assert dedup.claim_post("b"), "b was forgotten"


# --- Redis down -----------------------------------------------------------------------------------------


def test_redis_down_degrades_logs_once_and_lets_everything_through(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    dedup = RedisDeduplicator.from_url(url, retry_interval_s=30, timeout_s=0.5, monotonic=clock)

    with caplog.at_level(logging.INFO, logger="carspot.ingest.dedup"):
        answers = [dedup.claim_post("same") for _ in range(50)] + [dedup.claim_image("x") for _ in range(50)]
        dedup.release(post_id="same")

    assert all(answers), "while Redis is down nothing counts as a duplicate"
    assert dedup.degraded
    warnings = [r for r in caplog.records if r.name == "carspot.ingest.dedup" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "de-duplication is off" in warnings[0].getMessage()
    assert dedup.counters.errors == 1, "only the first call tried Redis; the rest wait for the retry time"
    assert dedup.counters.unchecked == 101 and dedup.counters.outages == 1  # no timeout paid per post

    clock.now += 31  # retry time: one more attempt, still down, still no new log line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="carspot.ingest.dedup"):
        assert dedup.claim_post("again")
    assert dedup.counters.errors == 2 and dedup.degraded
    assert not [r for r in caplog.records if r.name == "carspot.ingest.dedup"]


def test_a_client_factory_that_fails_also_degrades() -> None:
    def broken_factory() -> redis.Redis:
        raise redis.ConnectionError("no route")

    dedup = RedisDeduplicator(broken_factory)
    assert dedup.claim_post("p") and dedup.degraded


# --- real Redis -----------------------------------------------------------------------------------------


def test_redis_claims_are_set_nx_with_ttl_and_prefix(redis_server: RedisServer) -> None:
    redis_server.start()
    dedup = RedisDeduplicator.from_url(redis_server.url, ttl_s=3600, prefix="test:")
    other_producer = RedisDeduplicator.from_url(redis_server.url, ttl_s=3600, prefix="test:")
    client = redis_server.client()
    try:
        assert dedup.claim_post("p1") and not other_producer.claim_post("p1"), "shared between producers"
        assert dedup.claim_image("ab" * 32) and not dedup.claim_image("ab" * 32)
        ttl: int = client.ttl("test:post:p1")  # type: ignore[assignment]
        assert 3590 <= ttl <= 3600
        assert client.exists("test:image:" + "ab" * 32)
        dedup.release(post_id="p1", sha256="ab" * 32)
        assert not client.exists("test:post:p1", "test:image:" + "ab" * 32)
        assert other_producer.claim_post("p1")
        assert dedup.counters.claims == 3 and dedup.counters.duplicates == 1
        assert not dedup.degraded
    finally:
        client.close()
        dedup.close()
        other_producer.close()


def test_redis_outage_then_recovery(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    dedup = RedisDeduplicator.from_url(redis_server.url, retry_interval_s=5, monotonic=clock)
    with caplog.at_level(logging.INFO, logger="carspot.ingest.dedup"):
        assert dedup.claim_post("during-outage") and dedup.degraded  # not started yet

        redis_server.start()
        assert dedup.claim_post("still-waiting") and dedup.degraded, "no retry before the interval"
        clock.now += 6
        assert dedup.claim_post("after") and not dedup.degraded
        assert not dedup.claim_post("after")

        redis_server.stop()  # a second outage, with an already open pooled connection
        assert dedup.claim_post("second-outage") and dedup.degraded
    messages = [r.getMessage() for r in caplog.records if r.name == "carspot.ingest.dedup"]
    assert sum("de-duplication is off" in m for m in messages) == 2, "once per outage"
    assert sum("resumed" in m for m in messages) == 1
    assert dedup.counters.outages == 2
    dedup.close()
