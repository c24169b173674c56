"""Status and dead-letter replay on the REAL Kafka and PostgreSQL (issue 25).

A worker whose analysis is broken dead-letters every picture (in its Kafka transaction, as in production);
after the "fix" the letters are replayed and a working worker stores them; replaying again sends nothing, and
even a forced resend changes no row. The status sees the group's member, its lag, and the letters by reason.
The analysis itself is not under test: test_worker's one-car fake stands in for the models."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer
from PIL import Image
from sqlalchemy import create_engine, text

from carspot.pipeline import kafka_admin
from carspot.pipeline.app import open_store
from carspot.pipeline.dlq import REPLAY_OF_HEADER, LetterFilter, load_letters, plan_replay, replay
from carspot.pipeline.kafka_io import KafkaBatchOutcome, KafkaPostSource
from carspot.pipeline.message import Post
from carspot.pipeline.settings import Settings
from carspot.pipeline.status import collect_status, render
from carspot.pipeline.worker import Worker
from carspot.store.migrate import migrate
from carspot.store.records import AnalysisRecord
from tests.integration.conftest import Isolated
from tests.integration.support import carspot, read_topic
from tests.pipeline.test_worker import analyze_one

SCENES = ("times-square.png", "street-000004.jpg", "dog.jpg", "bus.jpg")


class ModelMissing(RuntimeError):
    reason = "model_unavailable"


def broken(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
    return [ModelMissing("brand model file missing") for _ in items]


def fixed(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
    return [analyze_one(p, image) for p, image in items]


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def real_posts(shared: Path) -> list[Post]:
    """The shared scenes as ingest would send them (JPEG, at most 320 px here to keep the test quick)."""
    posts = []
    for i, name in enumerate(SCENES):
        picture = Image.open(shared / "data" / "scenes" / name).convert("RGB")
        picture.thumbnail((320, 320))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        posts.append(
            Post(
                post_id=f"ops-{i}",
                source="test",
                ingested_at=datetime.now(UTC),
                image_sha256=hashlib.sha256(data).hexdigest(),
                width=picture.width,
                height=picture.height,
                image=data,
                author="@ops",
                text=name,
            )
        )
    return posts


def settings_for(isolated: Isolated, group: str) -> Settings:
    return Settings(
        kafka_bootstrap=isolated.services.kafka_bootstrap,
        posts_topic=isolated.posts_topic,
        dlq_topic=isolated.dlq_topic,
        consumer_group=group,
        database_url=isolated.database_url,  # type: ignore[arg-type]
        data_dir=isolated.data_dir,
        model_dir=isolated.data_dir / "no-models",
    )


def produce(settings: Settings, posts: Sequence[Post]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_request_size=16 << 20)
    for p in posts:
        producer.send(settings.posts_topic, key=p.post_id.encode(), value=p.encode())
    producer.flush()
    producer.close()


def run_worker(settings: Settings, analyze: object, *, expected: int) -> Worker:
    """A worker of the real group, transactional dead letters, the real store; until ``expected`` messages."""
    source = KafkaPostSource(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.posts_topic,
        group=settings.consumer_group,
        max_message_bytes=settings.kafka_max_message_bytes,
        max_poll_interval_ms=300_000,
    )
    outcome = KafkaBatchOutcome(settings=settings, source=source)
    store = open_store(settings.resolved_database_url, mode_for=lambda p: "detector")
    worker = Worker(
        source=source,
        outcome=outcome,
        analyze=analyze,  # type: ignore[arg-type]
        decode_image=decode,
        write_batch=store.write_batch,
        known_images=store.known_images,
        stored_posts=store.stored_posts,
        poll_timeout_s=0.5,
    )
    try:
        worker.run(max_messages=expected, timeout_s=90)
    finally:
        outcome.close()
    assert worker.stats.messages == expected, worker.stats
    return worker


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in ("posts", "images", "analyses", "regions", "brand_predictions")
            }
    finally:
        engine.dispose()


def test_replaying_twice_stores_each_post_once(isolated: Isolated, shared_dir: Path) -> None:
    settings = settings_for(isolated, f"it-{uuid.uuid4().hex[:8]}")
    migrate(settings.resolved_database_url)
    posts = real_posts(shared_dir)
    produce(settings, posts)

    first = run_worker(settings, broken, expected=len(posts))
    assert first.stats.dead_letters == {"model_unavailable": len(posts)}
    assert row_counts(settings.resolved_database_url)["posts"] == 0

    where = LetterFilter(reasons=frozenset({"model_unavailable"}), since=datetime.now(UTC) - timedelta(hours=1))
    letters = load_letters(settings.kafka_bootstrap, topic=settings.dlq_topic, where=where)
    assert sorted(s.letter.post_id for s in letters if s.letter) == sorted(p.post_id for p in posts)
    store = open_store(settings.resolved_database_url, mode_for=lambda p: "detector")
    sink = kafka_admin.KafkaReplaySink(
        bootstrap=settings.kafka_bootstrap, topic=settings.posts_topic, max_message_bytes=16 << 20, compression=None
    )
    try:
        assert replay(plan_replay(letters, stored_posts=store.stored_posts), sink=sink, dlq_topic="dlq") == len(posts)
        run_worker(settings, fixed, expected=len(posts))
        after_first = row_counts(settings.resolved_database_url)
        assert after_first["posts"] == after_first["analyses"] == len(posts)

        # The second replay finds every post stored and sends nothing.
        again = plan_replay(
            load_letters(settings.kafka_bootstrap, topic=settings.dlq_topic, where=where),
            stored_posts=store.stored_posts,
        )
        assert {d.action for d in again} == {"already_stored"}
        assert replay(again, sink=sink, dlq_topic="dlq") == 0

        # Even sent again (a replay racing the worker, before anything was stored), no row changes.
        forced = plan_replay(letters, stored_posts=lambda ids: {})
        assert replay(forced, sink=sink, dlq_topic="dlq") == len(posts)
        run_worker(settings, fixed, expected=len(posts))
    finally:
        sink.close()
    assert row_counts(settings.resolved_database_url) == after_first
    replayed = [v for _k, v in read_topic(settings.kafka_bootstrap, settings.posts_topic)]
    assert len(replayed) == 3 * len(posts)  # the originals, the replay and the forced resend
    dlq_after = load_letters(settings.kafka_bootstrap, topic=settings.dlq_topic, where=LetterFilter())
    assert len(dlq_after) == len(posts), "no new dead letter from the replays"


def test_replayed_records_carry_the_letter_they_came_from(isolated: Isolated, shared_dir: Path) -> None:
    settings = settings_for(isolated, f"it-{uuid.uuid4().hex[:8]}")
    migrate(settings.resolved_database_url)
    posts = real_posts(shared_dir)[:1]
    produce(settings, posts)
    run_worker(settings, broken, expected=1)
    letters = load_letters(settings.kafka_bootstrap, topic=settings.dlq_topic, where=LetterFilter())
    sink = kafka_admin.KafkaReplaySink(
        bootstrap=settings.kafka_bootstrap, topic=settings.posts_topic, max_message_bytes=16 << 20, compression=None
    )
    try:
        replay(plan_replay(letters, stored_posts=lambda ids: {}), sink=sink, dlq_topic=settings.dlq_topic)
    finally:
        sink.close()
    records = list(kafka_admin.read_window(settings.kafka_bootstrap, topic=settings.posts_topic))
    marked = [r for r in records if dict(r.headers).get(REPLAY_OF_HEADER)]
    assert [dict(r.headers)[REPLAY_OF_HEADER] for r in marked] == [
        f"{settings.dlq_topic}/{letters[0].id.replace(':', '/')}".encode()
    ]
    assert marked[0].key == b"ops-0" and Post.decode(marked[0].value) == posts[0]
    assert marked[0].partition == next(r for r in records if r not in marked).partition  # same key, same partition
    with pytest.raises(kafka_admin.KafkaUnavailable, match="read cut"):  # never a partial window passed as whole
        list(kafka_admin.read_window(settings.kafka_bootstrap, topic=settings.posts_topic, timeout_s=0))


def test_status_shows_members_lag_and_dead_letters(isolated: Isolated, shared_dir: Path) -> None:
    settings = settings_for(isolated, f"it-{uuid.uuid4().hex[:8]}")
    migrate(settings.resolved_database_url)
    posts = real_posts(shared_dir)
    produce(settings, posts[:2])
    run_worker(settings, broken, expected=1)  # one dead letter, then the rest is lag
    run_worker(settings, fixed, expected=1)
    produce(settings, posts[2:])

    member = KafkaPostSource(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.posts_topic,
        group=settings.consumer_group,
        max_message_bytes=settings.kafka_max_message_bytes,
        max_poll_interval_ms=300_000,
    )
    try:
        for _ in range(40):  # join the group; what it reads it never commits, so the lag stays as it is
            member.poll(timeout_s=0.25, max_records=1)
            if member.ready:
                break
        status = collect_status(settings, now=datetime.now(UTC), window=timedelta(hours=1))
        env = isolated.env(CARSPOT_CONSUMER_GROUP=settings.consumer_group)
        probe = [sys.executable, "-m", "carspot.pipeline.probe", "--host"]
        member_here = subprocess.run([*probe, "127.0.0.1"], env=env, capture_output=True, timeout=60, check=False)
        elsewhere = subprocess.run([*probe, "192.0.2.1"], env=env, capture_output=True, timeout=60, check=False)
    finally:
        member.close()
    assert member_here.returncode == 0, member_here.stderr  # the worker's probe: this host is in the group
    assert elsewhere.returncode == 1 and b"not a member" in elsewhere.stdout

    assert status.errors == {}, status.errors
    assert status.group is not None and status.group.state == "Stable"
    assert len(status.group.members) == 1 and status.group.members[0].partitions == (0, 1, 2, 3, 4, 5)
    assert status.lag is not None and len(status.lag) == 6
    assert status.total_lag == 2
    assert status.dead_letters == {"model_unavailable": 1}
    assert status.last_analysis_at is not None
    assert status.store_model_versions is not None
    assert [(u.model_version, u.analyses) for u in status.store_model_versions] == [("test", 1)]
    assert status.registry_version is None
    shown = render(status)
    assert "Stable, 1 member(s)" in shown and "lag            2 message(s)" in shown and "model_unavailable" in shown


def test_the_commands_list_show_and_replay_once(isolated: Isolated, shared_dir: Path) -> None:
    group = f"it-{uuid.uuid4().hex[:8]}"
    settings = settings_for(isolated, group)
    env = isolated.env(CARSPOT_CONSUMER_GROUP=group, CARSPOT_MODEL_DIR=str(isolated.data_dir / "no-models"))
    migrate(settings.resolved_database_url)
    posts = real_posts(shared_dir)[:2]
    produce(settings, posts)
    run_worker(settings, broken, expected=len(posts))

    rows = carspot("dlq", "list", "--reason", "model_unavailable", "--json", env=env)
    assert sorted(r["post_id"] for r in rows) == ["ops-0", "ops-1"]
    assert carspot("dlq", "list", "--reason", "store_rejected", "--json", env=env) == []
    shown = carspot("dlq", "show", rows[0]["id"], env=env)
    assert shown["original"]["kind"] == "post message" and shown["original"]["post"]["post_id"] == rows[0]["post_id"]
    assert shown["letter"]["reason"] == "model_unavailable"

    first = carspot("dlq", "replay", "--reason", "model_unavailable", "--json", env=env)
    assert first["sent"] == 2 and first["actions"] == {"send": 2}
    run_worker(settings, fixed, expected=len(posts))
    stored = row_counts(settings.resolved_database_url)
    second = carspot("dlq", "replay", "--reason", "model_unavailable", "--json", env=env)
    assert second["sent"] == 0 and second["actions"] == {"already_stored": 2}
    assert row_counts(settings.resolved_database_url) == stored

    status = carspot("status", "--since", "1h", "--json", env=env)
    assert status["errors"] == {}
    assert status["dead_letters"] == {"total": 2, "by_reason": {"model_unavailable": 2}}
    assert status["lag"]["total"] == 0 and status["group"]["state"] == "Empty"
    assert [v["model_version"] for v in status["model_versions"]["in_store"]] == ["test"]


def test_raising_the_partition_count_as_the_docs_say_shows_in_the_lag(isolated: Isolated) -> None:
    """docs/kubernetes.md: partitions are added with the admin client; the status counts the new ones."""
    from kafka.admin import KafkaAdminClient

    group = f"it-{uuid.uuid4().hex[:8]}"
    bootstrap, topic = isolated.services.kafka_bootstrap, isolated.posts_topic
    assert len(kafka_admin.group_lag(bootstrap, group=group, topic=topic)) == 6
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_partitions({topic: 8})
    finally:
        admin.close()
    for _ in range(20):  # the new partitions reach the metadata within a few seconds
        lag = kafka_admin.group_lag(bootstrap, group=group, topic=topic)
        if len(lag) == 8:
            break
    assert [p.partition for p in lag] == list(range(8)) and all(p.lag == 0 for p in lag)
