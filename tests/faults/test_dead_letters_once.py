"""A worker that crashes after storing a batch but before committing it replays the batch; its dead letters
must still be exactly one per bad message, each capped at ``max_original_bytes`` (issue 24, defect 7)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from kafka import KafkaProducer
from sqlalchemy import create_engine, text

from carspot.pipeline.app import open_store
from carspot.pipeline.kafka_io import KafkaBatchOutcome, KafkaPostSource
from carspot.pipeline.message import Post
from carspot.pipeline.settings import Settings
from carspot.pipeline.worker import Worker
from carspot.store.migrate import migrate
from carspot.store.records import AnalysisRecord, PostRecord
from tests.integration.conftest import Isolated
from tests.integration.support import dead_letters

CAP = 1 << 20


class Crash(BaseException):
    """Stands for the process dying (kill -9) right after the database commit, before the offsets move."""


def link_post(post_id: str) -> bytes:
    return Post(
        post_id=post_id,
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(post_id.encode()).hexdigest(),
        width=8,
        height=8,
        image=None,
    ).encode()


def produce(isolated: Isolated, values: Sequence[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=isolated.services.kafka_bootstrap, max_request_size=4 << 20)
    try:
        for value in values:  # one key: one partition, one batch
            producer.send(isolated.posts_topic, key=b"same", value=value).get(timeout=30)
    finally:
        producer.close()


def run_worker(isolated: Isolated, *, crash_after_write: bool) -> None:
    settings = Settings(
        kafka_bootstrap=isolated.services.kafka_bootstrap,
        posts_topic=isolated.posts_topic,
        dlq_topic=isolated.dlq_topic,
        consumer_group=f"{isolated.posts_topic}.analyzers",
        dlq_max_original_bytes=CAP,
    )
    store = open_store(isolated.database_url, mode_for=lambda post: "detector")

    def write(posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> object:
        result = store.write_batch(posts, analyses)
        if crash_after_write:
            raise Crash
        return result

    def no_analysis(items: object) -> list[AnalysisRecord | Exception]:
        raise AssertionError("only links and bad messages here: nothing to analyse")

    source = KafkaPostSource(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.posts_topic,
        group=settings.consumer_group,
        max_message_bytes=settings.kafka_max_message_bytes,
        max_poll_interval_ms=settings.max_poll_interval_ms,
    )
    outcome = KafkaBatchOutcome(settings=settings, source=source)
    worker = Worker(
        source=source,
        outcome=outcome,
        analyze=no_analysis,
        decode_image=lambda data: None,  # type: ignore[arg-type,return-value]
        write_batch=write,
        max_original_bytes=CAP,
        poll_timeout_s=0.5,
    )
    try:
        worker.run(max_messages=3, timeout_s=120)
    except Crash:
        pass
    finally:
        outcome.close()


def test_two_crashes_then_a_clean_run_leave_one_capped_dead_letter_per_bad_message(isolated: Isolated) -> None:
    migrate(isolated.database_url)
    huge = b"X" * (CAP + 4096)  # not a post, and bigger than the cap
    produce(isolated, [b"not a post", huge, link_post("good-1")])

    run_worker(isolated, crash_after_write=True)
    run_worker(isolated, crash_after_write=True)
    run_worker(isolated, crash_after_write=False)

    letters = dead_letters(isolated.services.kafka_bootstrap, isolated.dlq_topic)
    assert Counter((letter.origin_offset, letter.reason) for letter in letters) == {
        (0, "decode_error"): 1,
        (1, "decode_error"): 1,
    }
    capped = next(letter for letter in letters if letter.origin_offset == 1)
    assert len(capped.original) == CAP and capped.truncated and capped.original_size == len(huge)
    engine = create_engine(isolated.database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT post_id FROM posts")).scalars().all() == ["good-1"]
    finally:
        engine.dispose()
