"""The real thing: `up` starts Kafka (KRaft), PostgreSQL and Redis on loopback, `down` stops them.

Slow (about a minute on two cores): each root gets its own jars, cluster and ports, picked free so nothing
else on the machine (the developer's own `carspot services up`, other test runs) is touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from carspot.infra import postgres, redis_server, services, state
from carspot.infra.procs import is_alive
from carspot.infra.services import Endpoints, ServiceStartError

TOPICS = {"carspot.posts": 6, "carspot.posts.dlq": 1}
SIXTEEN_MIB = 16 * 1024 * 1024


@dataclass(frozen=True)
class Running:
    root: Path
    endpoints: Endpoints


def _cleanup(root: Path) -> None:
    """Stop what `up` recorded and remove a PostgreSQL cluster that had to live outside `root`."""
    services.down(root=root)
    st = state.load(root)
    if st.postgresql is not None and st.postgresql.note:
        per_root = Path(st.postgresql.data_dir).parent.parent  # FALLBACK_BASE/<digest of root>
        if per_root.is_relative_to(postgres.FALLBACK_BASE) and per_root != postgres.FALLBACK_BASE:
            shutil.rmtree(per_root, ignore_errors=True)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("services")
    try:
        endpoints = services.up(root=root, topics=TOPICS, timeout_s=180)
        yield Running(root, endpoints)
    finally:
        _cleanup(root)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_up_reports_loopback_endpoints_and_private_files(running: Running) -> None:
    e = running.endpoints
    assert e.kafka_bootstrap.startswith("127.0.0.1:")
    assert e.database_url.startswith("postgresql+psycopg://carspot:") and "@127.0.0.1:" in e.database_url
    assert e.database_url.endswith("/carspot")
    assert e.redis_url.startswith("redis://127.0.0.1:") and e.redis_url.endswith("/0")
    for name in (state.STATE_FILE, state.ENV_FILE):
        assert stat.S_IMODE((running.root / name).stat().st_mode) == 0o600
    env = (running.root / state.ENV_FILE).read_text()
    assert f"CARSPOT_KAFKA_BOOTSTRAP={e.kafka_bootstrap}\n" in env
    assert f"CARSPOT_DATABASE_URL={e.database_url}\n" in env
    assert f"CARSPOT_REDIS_URL={e.redis_url}\n" in env


def test_status_shows_all_three_running(running: Running) -> None:
    statuses = services.status(root=running.root)
    assert set(statuses) == {"kafka", "postgresql", "redis"}
    for st in statuses.values():
        assert st.running, st
        assert st.pid is not None and is_alive(st.pid)
    assert statuses["kafka"].endpoint == running.endpoints.kafka_bootstrap
    assert statuses["redis"].endpoint == running.endpoints.redis_url
    pg_endpoint = statuses["postgresql"].endpoint
    assert pg_endpoint is not None and "127.0.0.1" in pg_endpoint and "carspot" in pg_endpoint


def test_postgres_cluster_placement_is_recorded(running: Running) -> None:
    pg = state.load(running.root).postgresql
    assert pg is not None
    user = postgres.system_user(create=False)
    blocked = postgres.blocking_parent(running.root / "postgres", user) if user else None
    if blocked is None:
        assert pg.note is None and Path(pg.data_dir) == running.root / "postgres" / "data"
    else:  # e.g. root running pytest: /tmp/pytest-of-root is 0700, so the cluster lives elsewhere
        assert pg.note is not None and str(blocked) in pg.note
        assert Path(pg.data_dir).is_relative_to(postgres.FALLBACK_BASE)


def test_kafka_topics_have_the_asked_partitions_and_16_mib_limit(running: Running) -> None:
    admin = KafkaAdminClient(bootstrap_servers=running.endpoints.kafka_bootstrap, request_timeout_ms=30_000)
    try:
        described = {t["name"]: t for t in admin.describe_topics(list(TOPICS))}
        assert {name: len(described[name]["partitions"]) for name in TOPICS} == TOPICS
        resources = [ConfigResource(ConfigResourceType.TOPIC, name, ["max.message.bytes"]) for name in TOPICS]
        configs = admin.describe_configs(resources)["topic"]
        for name in TOPICS:
            assert configs[name]["max.message.bytes"]["value"] == str(SIXTEEN_MIB)
    finally:
        admin.close()


def test_kafka_carries_a_large_message(running: Running) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    producer = KafkaProducer(
        bootstrap_servers=running.endpoints.kafka_bootstrap, max_request_size=SIXTEEN_MIB, acks="all"
    )
    try:
        producer.send("carspot.posts.dlq", key=b"big", value=payload).get(timeout=60)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        "carspot.posts.dlq",
        bootstrap_servers=running.endpoints.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=SIXTEEN_MIB,
        fetch_max_bytes=2 * SIXTEEN_MIB,
    )
    found = False
    deadline = time.monotonic() + 60
    try:
        while not found and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=1000)
            found = any(record.value == payload for records in batch.values() for record in records)
    finally:
        consumer.close()
    assert found, "the 5 MiB message did not come back"


def test_postgres_accepts_a_query(running: Running) -> None:
    with psycopg.connect(_libpq(running.endpoints.database_url), connect_timeout=10) as conn:
        row = conn.execute("SELECT current_user, current_database(), current_setting('listen_addresses')").fetchone()
    assert row == ("carspot", "carspot", "127.0.0.1")


def test_redis_answers_ping(running: Running) -> None:
    client = redis.Redis.from_url(running.endpoints.redis_url, socket_timeout=5)
    try:
        assert client.ping() is True
        config = client.config_get("*")
        assert isinstance(config, dict)
        assert config["bind"] == "127.0.0.1"
        assert config["appendonly"] == "yes"
    finally:
        client.close()


def test_redis_keeps_its_keys_across_a_restart(running: Running) -> None:
    """De-duplication claims survive a Redis restart (issue 24, defect 9): an append-only file."""
    client = redis.Redis.from_url(running.endpoints.redis_url, socket_timeout=5)
    try:
        client.set("carspot:test:claim", "1")
    finally:
        client.close()
    st = state.load(running.root)
    assert st.redis is not None and redis_server.stop(st.redis)
    services.up(root=running.root, topics=TOPICS)
    client = redis.Redis.from_url(running.endpoints.redis_url, socket_timeout=5)
    try:
        assert client.get("carspot:test:claim") == b"1"
    finally:
        client.close()


def test_second_up_is_a_no_op(running: Running) -> None:
    before = services.status(root=running.root)
    again = services.up(root=running.root, topics=TOPICS)
    assert again == running.endpoints
    after = services.status(root=running.root)
    assert {n: s.pid for n, s in after.items()} == {n: s.pid for n, s in before.items()}  # nothing restarted


def test_up_adds_partitions_to_an_existing_topic(running: Running) -> None:
    pids = {n: s.pid for n, s in services.status(root=running.root).items()}
    services.up(root=running.root, topics={**TOPICS, "carspot.posts": 8})
    admin = KafkaAdminClient(bootstrap_servers=running.endpoints.kafka_bootstrap)
    try:
        (topic,) = admin.describe_topics(["carspot.posts"])
    finally:
        admin.close()
    assert len(topic["partitions"]) == 8
    assert {n: s.pid for n, s in services.status(root=running.root).items()} == pids


def test_down_stops_all_three(running: Running) -> None:
    pids = [s.pid for s in services.status(root=running.root).values()]
    assert sorted(services.down(root=running.root)) == ["kafka", "postgresql", "redis"]
    statuses = services.status(root=running.root)
    assert not any(s.running for s in statuses.values()), statuses
    assert not any(is_alive(pid) for pid in pids)
    assert not (running.root / state.ENV_FILE).exists()  # no command goes on using a stopped service's address
    assert services.down(root=running.root) == []


def test_up_after_down_restarts_on_the_same_ports_despite_stale_pids(running: Running) -> None:
    """A crash leaves pids behind: a dead one in services.json, a recycled one in postmaster.pid."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    st = state.load(running.root)
    assert st.kafka is not None and st.postgresql is not None
    st.kafka.pid = dead.pid
    state.save(running.root, st)
    lock = Path(st.postgresql.data_dir) / "postmaster.pid"
    lock.write_text(f"{os.getpid()}\n{st.postgresql.data_dir}\n")  # a live pid that is not a postmaster

    assert services.up(root=running.root, topics=TOPICS) == running.endpoints
    assert all(s.running for s in services.status(root=running.root).values())
    assert f"CARSPOT_DATABASE_URL={running.endpoints.database_url}\n" in (running.root / state.ENV_FILE).read_text()
    assert sorted(services.down(root=running.root)) == ["kafka", "postgresql", "redis"]


def test_a_broker_that_cannot_start_raises_naming_kafka(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A real failure: the log dir belongs to another node (node.id 7), so the broker exits at start-up."""
    root = tmp_path_factory.mktemp("broken")
    data = root / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text(
        "version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=7\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAw\n"
    )
    try:
        with pytest.raises(ServiceStartError) as caught:
            services.up(root=root, topics=TOPICS, timeout_s=90)
        assert caught.value.service == "kafka"
        message = str(caught.value)
        assert message.startswith("kafka: ")
        assert "node id 7" in message  # the broker's own reason, from the tail of its log
        assert services.status(root=root)["kafka"].running is False
    finally:
        _cleanup(root)
    assert not any(s.running for s in services.status(root=root).values())
