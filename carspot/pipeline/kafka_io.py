"""Kafka wiring (kafka-python): the producer ingest sends with, the consumer-group member the worker polls,
and the dead-letter producer. The only module that imports ``kafka``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition

from carspot.ingest.loop import EmitInterrupted
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.ingesting import SinkEmitter
from carspot.pipeline.ports import CommitFailed, Incoming
from carspot.pipeline.settings import Settings

log = logging.getLogger("carspot.pipeline.kafka")

_HEADROOM = 64 << 10  # message header and record overhead on top of the image
_WAIT_LOG_INTERVAL_S = 5.0  # how often a send waiting out an outage says so
_RECONNECT_BACKOFF_MAX_MS = 5_000  # kafka-python's 30 s default kept a restarted broker unused for over a minute


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
    linger_ms: int = 5,
    max_block_ms: int = 60_000,
    delivery_timeout_ms: int = 120_000,
    request_timeout_ms: int = 30_000,
) -> KafkaProducer:
    """Idempotent producer, acks from all in-sync replicas, raised request size for images."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        compression_type=compression,
        linger_ms=linger_ms,
        max_request_size=max_message_bytes + _HEADROOM,
        batch_size=256 << 10,
        delivery_timeout_ms=delivery_timeout_ms,
        request_timeout_ms=request_timeout_ms,
        max_block_ms=max_block_ms,
        client_id=client_id,
        transactional_id=transactional_id,
        transaction_timeout_ms=transaction_timeout_ms,
        reconnect_backoff_max_ms=_RECONNECT_BACKOFF_MAX_MS,
    )


class KafkaSender:
    """Sends to one topic. With ``acked=True`` every send waits for Kafka's acknowledgement (one message in
    flight: the ingest loop keeps a post's de-duplication claim only once ``send`` returns, so a post Kafka
    lost is never taken for sent) and waits out an outage, sending again with capped backoff and a warning
    each time, until acknowledged or ``should_stop()`` (then :class:`EmitInterrupted`). Otherwise the futures
    are kept and ``flush`` tells whether everything was acknowledged."""

    def __init__(
        self,
        *,
        producer: KafkaProducer,
        topic: str,
        acked: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        backoff_max_s: float = 30.0,
        ack_poll_s: float = 0.5,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._pending: list[FutureRecordMetadata] = []
        self._acked = acked
        self._should_stop = should_stop
        self._backoff_max_s = backoff_max_s
        self._ack_poll_s = ack_poll_s

    def _send(self, *, key: bytes, value: bytes) -> None:
        if not self._acked:
            self._pending.append(self._producer.send(self._topic, key=key, value=value))
            if len(self._pending) >= 10_000:
                self.flush()
            return
        attempt = 0
        while (error := self._send_acked(key, value)) is not None:
            attempt += 1
            wait = min(self._backoff_max_s, 0.5 * 2 ** min(attempt, 10))
            log.warning(
                "Kafka did not acknowledge a message to %s (attempt %d: %r); sending it again in %.1f s",
                self._topic,
                attempt,
                error,
                wait,
            )
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._stop_if_asked()
                time.sleep(min(self._ack_poll_s, max(0.0, deadline - time.monotonic())))

    def _send_acked(self, key: bytes, value: bytes) -> BaseException | None:
        """None once acknowledged, else why not (the caller waits and sends again)."""
        try:
            future = self._producer.send(self._topic, key=key, value=value)
        except KafkaTimeoutError as exc:  # no metadata or a full buffer within max_block_ms: the broker is away
            return exc
        started = last_said = time.monotonic()
        while True:
            try:
                future.get(timeout=self._ack_poll_s)
                return None
            except KafkaError as exc:
                if future.is_done:  # failed (e.g. expired after the delivery timeout)
                    return exc
                self._stop_if_asked()  # still in flight: a stop request must not wait for the delivery timeout
                if time.monotonic() - last_said >= _WAIT_LOG_INTERVAL_S:
                    last_said = time.monotonic()
                    waited = last_said - started
                    log.warning("waiting %.0f s for Kafka to acknowledge a message to %s", waited, self._topic)

    def _stop_if_asked(self) -> None:
        if self._should_stop():
            raise EmitInterrupted(f"stopped before Kafka acknowledged a message to {self._topic}")

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
            reconnect_backoff_max_ms=_RECONNECT_BACKOFF_MAX_MS,
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

    def lags(self) -> dict[int, int]:
        """Per partition owned now, messages between the position and the last known high watermark (from the
        fetch responses: no request of its own); a partition not fetched yet is left out."""
        lags: dict[int, int] = {}
        for tp in self._consumer.assignment() or ():
            try:
                highwater = self._consumer.highwater(tp)
                position = self._consumer.position(tp, timeout_ms=100) if highwater is not None else None
            except KafkaError as exc:  # revoked meanwhile (IllegalStateError), or the broker is away
                log.debug("no lag for %s: %r", tp, exc)
                continue
            if highwater is not None and position is not None:
                lags[tp.partition] = max(0, highwater - position)
        return lags

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


def _connect_waiting(
    connect: Callable[[], KafkaProducer], *, should_stop: Callable[[], bool], backoff_max_s: float = 30.0
) -> KafkaProducer:
    """``connect()`` until the broker answers (a producer cannot even start without one), with capped backoff
    and a warning each attempt; :class:`EmitInterrupted` if asked to stop meanwhile."""
    attempt = 0
    while True:
        try:
            return connect()
        except KafkaError as exc:
            attempt += 1
            wait = min(backoff_max_s, 0.5 * 2 ** min(attempt, 10))
            log.warning("Kafka is not reachable (attempt %d: %r); trying again in %.1f s", attempt, exc, wait)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if should_stop():
                raise EmitInterrupted("stopped before Kafka was reachable")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def kafka_emitter(
    settings: Settings, *, mode: str | None = None, should_stop: Callable[[], bool] | None = None
) -> tuple[KafkaProducer, SinkEmitter]:
    """One producer for the posts and the dead letters of an ingest process, and the emitter over it.

    With ``should_stop`` every message waits for its acknowledgement and through outages (``KafkaSender``),
    so the ingest loop keeps a claim only for what Kafka has; without, sends are batched until ``flush``."""
    acked = should_stop is not None
    stop = should_stop or (lambda: False)

    def connect() -> KafkaProducer:
        return make_producer(
            bootstrap=settings.kafka_bootstrap,
            max_message_bytes=settings.kafka_max_message_bytes,
            compression=settings.kafka_compression,
            linger_ms=0 if acked else 5,  # one message in flight: nothing to batch with
            max_block_ms=10_000 if acked else 60_000,  # a send blocked on a missing broker re-checks for a stop
        )

    producer = _connect_waiting(connect, should_stop=stop) if acked else connect()
    emitter = SinkEmitter(
        posts=KafkaPostSink(producer=producer, topic=settings.posts_topic, acked=acked, should_stop=stop),
        dead_letters=KafkaDeadLetterSink(producer=producer, topic=settings.dlq_topic, acked=acked, should_stop=stop),
        mode=mode,
    )
    return producer, emitter
