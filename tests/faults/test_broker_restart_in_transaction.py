"""The broker restarted while a worker's transaction (dead letters + offsets) is open (issue 24, defect 4): the
commit gives up within its bound instead of waiting for ever (kafka-python's commit_transaction has no timeout,
and a broker restart can leave it waiting for a request it dropped), the worker re-reads the batch, and once the
broker is back every bad message has exactly one committed dead letter and every offset is committed. On the
suite's private stack: the shared broker is never touched."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from carspot.pipeline.kafka_io import KafkaBatchOutcome, KafkaPostSource
from carspot.pipeline.ports import Incoming
from carspot.pipeline.settings import Settings
from carspot.pipeline.worker import Worker
from tests.faults.stack import PrivateStack
from tests.integration.support import dead_letters

pytestmark = pytest.mark.integration

BAD = 12  # messages that are not posts: one dead letter each
BATCH = 4


@dataclass(frozen=True)
class Topics:
    posts: str
    dlq: str
    group: str


@pytest.fixture
def topics(stack: PrivateStack) -> Topics:
    tag = uuid.uuid4().hex[:8]
    chosen = Topics(posts=f"t-{tag}.posts", dlq=f"t-{tag}.dlq", group=f"t-{tag}")
    admin = KafkaAdminClient(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(chosen.posts, 1, 1), NewTopic(chosen.dlq, 1, 1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    try:
        for n in range(BAD):
            producer.send(chosen.posts, key=b"bad-%d" % n, value=b"not a post %d" % n)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    return chosen


@dataclass(frozen=True)
class Consumer:
    """A worker on the stack's broker, and the group member it polls through."""

    worker: Worker
    source: KafkaPostSource


@pytest.fixture
def consumer(stack: PrivateStack, topics: Topics) -> Iterator[Consumer]:
    settings = Settings(kafka_bootstrap=stack.endpoints.kafka_bootstrap, dlq_topic=topics.dlq)
    source = KafkaPostSource(
        bootstrap=stack.endpoints.kafka_bootstrap,
        topic=topics.posts,
        group=topics.group,
        max_message_bytes=settings.kafka_max_message_bytes,
        max_poll_interval_ms=60_000,
    )
    outcome = KafkaBatchOutcome(settings=settings, source=source)
    built = Worker(
        source=source,
        outcome=outcome,
        analyze=lambda items: [RuntimeError("never called: no message is a post")] * len(items),
        decode_image=lambda data: np.zeros((1, 1, 3), np.uint8),
        write_batch=lambda posts, analyses: None,
        batch_max_messages=BATCH,
        poll_timeout_s=0.5,
    )
    try:
        yield Consumer(built, source)
    finally:
        source.close()
        outcome.close()


def polled(source: KafkaPostSource, count: int) -> list[Incoming]:
    messages: list[Incoming] = []
    for _ in range(120):  # bounded: the group join and the first fetch take a few seconds
        messages.extend(source.poll(timeout_s=0.5, max_records=count - len(messages)))
        if len(messages) >= count:
            return messages
    raise AssertionError(f"only {len(messages)} of {count} messages polled")


def committed(source: KafkaPostSource, topics: Topics) -> int | None:
    """The group's committed offset of the posts partition (None while the broker does not answer)."""
    try:
        return source.committed([(topics.posts, 0)]).get((topics.posts, 0))
    except KafkaError:
        return None


def test_a_broker_restarted_during_a_transaction_neither_blocks_the_worker_nor_duplicates_a_letter(
    stack: PrivateStack, topics: Topics, consumer: Consumer
) -> None:
    the_worker, source = consumer.worker, consumer.source
    the_worker.process_batch(polled(source, BATCH))  # the transactional producer is up and has committed once
    assert committed(source, topics) == BATCH

    second = polled(source, BATCH)
    stack.kill_kafka()
    done = threading.Event()
    failure: list[BaseException] = []

    def process() -> None:
        try:
            the_worker.process_batch(second)  # its transaction meets a broker that is gone, then restarted
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=process, name="batch-during-restart", daemon=True).start()
    stack.restart()
    assert done.wait(timeout=120), "the worker's commit still waits 120 s after the broker came back"
    assert not failure, f"the batch raised instead of being re-read: {failure[0]!r}"

    for _ in range(480):  # bounded: the worker's loop, until the group has committed every message
        if committed(source, topics) == BAD:
            break
        messages = source.poll(timeout_s=0.5, max_records=BATCH)
        if messages:
            the_worker.process_batch(messages)
    assert committed(source, topics) == BAD, "every offset committed once the broker is back"
    letters = dead_letters(stack.endpoints.kafka_bootstrap, topics.dlq)
    assert sorted(letter.origin_offset for letter in letters) == list(range(BAD)), "one dead letter per message"
    assert {letter.reason for letter in letters} == {"decode_error"}
