"""Kafka wiring (kafka-python): the producer ingest sends with, the consumer-group member the worker polls,
and the dead-letter producer. The only module that imports ``kafka``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition

from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.ingesting import SinkEmitter
from carspot.pipeline.ports import CommitFailed, Incoming
from carspot.pipeline.settings import Settings

log = logging.getLogger("carspot.pipeline.kafka")

_HEADROOM = 64 << 10  # message header and record overhead on top of the image


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge a message within the delivery timeout."""


def make_producer(
    *,
    bootstrap: str,
    max_message_bytes: int,
    compression: str | None,
    transactional_id: str | None = None,
    client_id: str = "carspot-ingest",
    transaction_timeout_ms: int = 60_000,
) -> KafkaProducer:
    """Idempotent producer, acks from all in-sync replicas, raised request size for images."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        compression_type=compression,
        linger_ms=5,
        max_request_size=max_message_bytes + _HEADROOM,
        batch_size=256 << 10,
        delivery_timeout_ms=120_000,
        client_id=client_id,
        transactional_id=transactional_id,
        transaction_timeout_ms=transaction_timeout_ms,
    )


class KafkaSender:
    """Sends to one topic and keeps the futures, so ``flush`` can tell whether everything was acknowledged."""

    def __init__(self, *, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: list[FutureRecordMetadata] = []

    def _send(self, *, key: bytes, value: bytes) -> None:
        self._pending.append(self._producer.send(self._topic, key=key, value=value))
        if len(self._pending) >= 10_000:
            self.flush()

    def flush(self) -> None:
        """Block until every message sent so far is acknowledged; raise if any was not."""
        self._producer.flush()
        pending, self._pending = self._pending, []
        failures = [f.exception for f in pending if f.failed()]
        if failures:
            raise DeliveryError(f"{len(failures)} message(s) to {self._topic} failed: {failures[0]!r}")


class KafkaPostSink(KafkaSender):
    def send_post(self, *, key: str, value: bytes) -> None:
        self._send(key=key.encode(), value=value)


class KafkaDeadLetterSink(KafkaSender):
    def send(self, letter: DeadLetter) -> None:
        self._send(key=letter.key, value=letter.encode())


class KafkaPostSource:
    """A member of the analyzers' consumer group with manual commits (MessageSource)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        max_message_bytes: int,
        max_poll_interval_ms: int,
        client_id: str = "carspot-worker",
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max_message_bytes + _HEADROOM,
            fetch_max_bytes=max(52_428_800, max_message_bytes + _HEADROOM),
            max_poll_interval_ms=max_poll_interval_ms,
            isolation_level="read_committed",
            # A killed worker's partitions move to the others after this long, not Kafka's default 45 s.
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(1000, session_timeout_ms // 3),
        )

    @property
    def ready(self) -> bool:
        return bool(self._consumer.assignment())

    def poll(self, *, timeout_s: float, max_records: int) -> Sequence[Incoming]:
        try:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:  # the broker is away: wait as a poll would, and let the caller poll again
            log.warning("poll failed, retrying: %r", exc)
            time.sleep(timeout_s)
            return []
        return [
            Incoming(topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value)
            for records in polled.values()
            for r in records
        ]

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        try:
            self._consumer.commit(_offsets(offsets))
        except KafkaError as exc:
            # A rebalance (CommitFailedError) or a broker that did not answer (KafkaTimeoutError): the batch is
            # stored and writes are idempotent, so whoever owns the partitions next re-reading it changes nothing.
            raise CommitFailed(f"offset commit failed: {exc!r}") from exc

    def group_metadata(self) -> object:
        """This member's generation, for offsets committed in a producer transaction (KIP-447 fencing)."""
        return self._consumer.group_metadata()

    def seek(self, *, topic: str, partition: int, offset: int) -> None:
        try:
            self._consumer.seek(TopicPartition(topic, partition), offset)
        except ValueError:
            log.info("partition %s-%d was revoked; its new owner re-reads from the commit", topic, partition)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def _offsets(offsets: Mapping[tuple[str, int], int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


class KafkaBatchOutcome:
    """A worker's dead letters and offsets in one Kafka transaction (BatchOutcome): a batch replayed after a
    crash or an outage finds its earlier letters aborted, so every bad message has exactly one dead letter for
    a ``read_committed`` reader. The transactional id is this process's own; KIP-447 fences stale members."""

    def __init__(self, *, settings: Settings, source: KafkaPostSource) -> None:
        self._settings = settings
        self._source = source
        self._producer: KafkaProducer | None = None

    def _ready(self) -> KafkaProducer:
        if self._producer is None:
            s = self._settings
            producer = make_producer(
                bootstrap=s.kafka_bootstrap,
                max_message_bytes=s.kafka_max_message_bytes,
                compression=s.kafka_compression,
                transactional_id=f"carspot-worker-{uuid.uuid4().hex}",
                client_id="carspot-worker-dlq",
                transaction_timeout_ms=10_000,  # a killed worker's open transaction stalls readers at most this long
            )
            try:
                producer.init_transactions()
            except BaseException:
                producer.close(timeout=5)
                raise
            self._producer = producer
        return self._producer

    def commit(self, *, offsets: Mapping[tuple[str, int], int], dead_letters: Sequence[DeadLetter]) -> None:
        try:
            producer = self._ready()
        except KafkaError as exc:
            raise CommitFailed(f"cannot start a transaction: {exc!r}") from exc
        try:
            producer.begin_transaction()
            for letter in dead_letters:
                producer.send(self._settings.dlq_topic, key=letter.key, value=letter.encode())
            if offsets:
                producer.send_offsets_to_transaction(_offsets(offsets), self._source.group_metadata())
            producer.commit_transaction()
        except KafkaError as exc:
            self._abort()
            raise CommitFailed(
                f"transaction of {len(dead_letters)} dead letter(s) and offsets failed: {exc!r}"
            ) from exc

    def _abort(self) -> None:
        """Abort what is open; a producer that cannot (fenced, broker gone) is replaced on the next commit."""
        if self._producer is None:
            return
        try:
            self._producer.abort_transaction()
        except KafkaError as exc:
            log.warning("could not abort the transaction (%r); starting a new producer", exc)
            self.close()

    def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.close(timeout=5)


def kafka_emitter(settings: Settings, *, mode: str | None = None) -> tuple[KafkaProducer, SinkEmitter]:
    """One producer for the posts and the dead letters of an ingest process, and the emitter over it."""
    producer = make_producer(
        bootstrap=settings.kafka_bootstrap,
        max_message_bytes=settings.kafka_max_message_bytes,
        compression=settings.kafka_compression,
    )
    emitter = SinkEmitter(
        posts=KafkaPostSink(producer=producer, topic=settings.posts_topic),
        dead_letters=KafkaDeadLetterSink(producer=producer, topic=settings.dlq_topic),
        mode=mode,
    )
    return producer, emitter
