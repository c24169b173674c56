"""Integration fixtures: the REAL Kafka, PostgreSQL and Redis that ``carspot services up`` started.

Nothing here starts or fakes a service. If one is not reachable the test fails with a message naming it (CI's
``scripts/test`` starts them first); it is never skipped. Each test gets its own topics, its own database and
its own Redis key prefix, so tests cannot see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from carspot.pipeline.settings import Settings

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    database_url: str
    redis_url: str


@pytest.fixture(scope="session")
def services() -> Services:
    settings = Settings.load()
    database_url = settings.database_url.get_secret_value()
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    hint = "start the services with `carspot services up` (scripts/test does)"
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
        admin.list_topics()
        admin.close()
    except Exception as exc:
        pytest.fail(f"kafka is not reachable at {settings.kafka_bootstrap}: {exc!r}; {hint}")
    if not database_url.startswith("postgresql"):
        pytest.fail(f"postgresql: CARSPOT_DATABASE_URL is not a PostgreSQL URL ({database_url!r}); {hint}")
    try:
        with psycopg.connect(_libpq(database_url), connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        pytest.fail(f"postgresql is not reachable: {exc!r}; {hint}")
    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except Exception as exc:
        pytest.fail(f"redis is not reachable at {redis_url!r}: {exc!r}; {hint}")
    return Services(settings.kafka_bootstrap, database_url, redis_url)


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Isolated:
    """One test's own corner of the real services, and the environment that points the CLI at it."""

    services: Services
    posts_topic: str
    dlq_topic: str
    database_url: str
    redis_prefix: str
    data_dir: Path

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")}
        env.update(
            CARSPOT_KAFKA_BOOTSTRAP=self.services.kafka_bootstrap,
            CARSPOT_DATABASE_URL=self.database_url,
            CARSPOT_REDIS_URL=self.services.redis_url,
            CARSPOT_REDIS_KEY_PREFIX=self.redis_prefix,
            CARSPOT_POSTS_TOPIC=self.posts_topic,
            CARSPOT_DLQ_TOPIC=self.dlq_topic,
            CARSPOT_DATA_DIR=str(self.data_dir),
            CARSPOT_SHARED_DIR=os.environ.get("CARSPOT_SHARED_DIR", str(_shared())),
        )
        env.update(overrides)
        return env

    def database(self, name: str) -> str:
        """A further empty database on the same server (e.g. for a reference run)."""
        return _create_database(self.services.database_url, name)


def _shared() -> Path:
    from tests.conftest import shared_path

    return shared_path()


def _create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def isolated(services: Services, tmp_path: Path) -> Iterator[Isolated]:
    tag = uuid.uuid4().hex[:10]
    posts_topic, dlq_topic = f"it-{tag}.posts", f"it-{tag}.posts.dlq"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    big = {"max.message.bytes": str(16 << 20)}
    admin.create_topics([NewTopic(posts_topic, 6, 1, topic_configs=big), NewTopic(dlq_topic, 1, 1, topic_configs=big)])
    database_url = _create_database(services.database_url, f"it_{tag}")
    try:
        yield Isolated(services, posts_topic, dlq_topic, database_url, f"it-{tag}:", tmp_path / "data")
    finally:
        admin.delete_topics([posts_topic, dlq_topic])
        admin.close()
