"""Kafka wiring (kafka-python): the producer ingest sends with, the consumer-group member the worker polls,
and the dead-letter producer. With kafka_txn (bounded transactional calls), the only modules that import
``kafka``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition

from carspot.ingest.loop import EmitInterrupted
from carspot.pipeline import kafka_txn
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
    """Idempotent producer, acks from all in-sync replicas, raised request size for images; ``max_block_ms``
    bounds every blocking call (start-up, metadata, a full buffer, ``init_transactions``), and ``close(timeout)``
    returns within about ``timeout`` even with records stuck (kafka_txn.ClosingProducer)."""
    return kafka_txn.ClosingProducer(
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
        bootstrap_timeout_ms=max_block_ms,  # a broker that is away: the constructor gives up as soon as a send would
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
        flush_timeout_s: float = 180.0,
    ) -> None:
        self._producer = producer
        self._flush_timeout_s = flush_timeout_s
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
        """Block until every message sent so far is acknowledged; raise if any was not. (Acked: nothing to wait
        for, every send already was.)"""
        if self._acked:
            return
        try:
            self._producer.flush(timeout=self._flush_timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"messages to {self._topic} not acknowledged: {exc!r}") from exc
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
    """A member of the analyzers' consumer group with manual commits (MessageSource). Every call that talks to
    the broker is bounded by ``call_timeout_s``. A broker that is away, at start-up or later, is waited out
    poll by poll (nothing read, a warning now and then): the consumer is created once the broker answers, and
    rejoins the group by itself after a restart (positions then restart from the committed offsets)."""

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
        call_timeout_s: float = 10.0,
        connect_backoff_max_s: float = 5.0,
    ) -> None:
        self._call_timeout_ms = int(call_timeout_s * 1000)
        self._topic = topic
        self._config: dict[str, object] = dict(
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
            request_timeout_ms=max(self._call_timeout_ms, session_timeout_ms + 5_000),
            bootstrap_timeout_ms=self._call_timeout_ms,
            reconnect_backoff_max_ms=_RECONNECT_BACKOFF_MAX_MS,
        )
        self._connect_backoff_max_s = connect_backoff_max_s
        self._connect_attempts = 0
        self._next_connect = 0.0
        self._consumer: KafkaConsumer | None = None
        self._connected()

    def _connected(self) -> KafkaConsumer | None:
        """The consumer, created now if the broker answers (else None, and a warning)."""
        if self._consumer is None and time.monotonic() >= self._next_connect:
            try:
                self._consumer = KafkaConsumer(self._topic, **self._config)
            except KafkaError as exc:
                self._connect_attempts += 1
                wait = min(self._connect_backoff_max_s, 0.5 * 2 ** min(self._connect_attempts, 10))
                self._next_connect = time.monotonic() + wait
                log.warning(
                    "Kafka is not reachable (attempt %d: %r); trying again in %.1f s", self._connect_attempts, exc, wait
                )
            else:
                self._connect_attempts = 0
        return self._consumer

    def _required(self) -> KafkaConsumer:
        consumer = self._connected()
        if consumer is None:
            raise KafkaConnectionError("not connected to Kafka yet")
        return consumer

    @property
    def ready(self) -> bool:
        return self._consumer is not None and bool(self._consumer.assignment())

    def poll(self, *, timeout_s: float, max_records: int) -> Sequence[Incoming]:
        consumer = self._connected()
        if consumer is None:
            time.sleep(timeout_s)
            return []
        try:
            polled = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
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
        if self._consumer is None:  # not connected yet: nothing owned
            return lags
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
            self._required().commit(_offsets(offsets), timeout_ms=self._call_timeout_ms)
        except KafkaError as exc:
            # A rebalance (CommitFailedError) or a broker that did not answer (KafkaTimeoutError): the batch is
            # stored and writes are idempotent, so whoever owns the partitions next re-reading it changes nothing.
            raise CommitFailed(f"offset commit failed: {exc!r}") from exc

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The group's committed offset of each partition (absent: none yet); KafkaError if the broker does not
        answer within the call timeout."""
        consumer = self._required()
        found: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            offset = consumer.committed(TopicPartition(topic, partition), timeout_ms=self._call_timeout_ms)
            if offset is not None:
                found[(topic, partition)] = int(offset)
        return found

    def group_metadata(self) -> object:
        """This member's generation, for offsets committed in a producer transaction (KIP-447 fencing)."""
        return self._required().group_metadata()

    def seek(self, *, topic: str, partition: int, offset: int) -> None:
        if self._consumer is None:
            return  # never joined: the first assignment starts from the committed offsets
        try:
            self._consumer.seek(TopicPartition(topic, partition), offset)
        except ValueError:
            log.info("partition %s-%d was revoked; its new owner re-reads from the commit", topic, partition)

    def close(self) -> None:
        if self._consumer is None:
            return
        try:
            self._consumer.close(autocommit=False, timeout_ms=self._call_timeout_ms)
        except KafkaError as exc:  # leaving the group is best effort: the session timeout ends it anyway
            log.warning("could not leave the consumer group cleanly: %r", exc)


def _offsets(offsets: Mapping[tuple[str, int], int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}


class KafkaBatchOutcome:
    """A worker's dead letters and offsets in one Kafka transaction (BatchOutcome): a batch replayed after a
    crash or an outage finds its earlier letters aborted, so every bad message has exactly one dead letter for
    a ``read_committed`` reader.

    Every step is bounded by ``timeout_s`` (kafka_txn). A producer that failed or timed out is dropped and the
    next commit starts a new one under the same transactional id: ``init_transactions`` fences the old one and
    finishes its open transaction (aborted, or committed if it had got that far). Since a commit that timed out
    may have committed after all, the first commit after a failure asks the group for its committed offsets and
    leaves out what they already cover (offsets not ahead of them, letters of messages before them), so a
    batch re-read after an uncertain commit never sends its letters twice."""

    def __init__(self, *, settings: Settings, source: KafkaPostSource, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._source = source
        self._timeout_s = timeout_s
        self._transactional_id = f"carspot-worker-{uuid.uuid4().hex}"  # this process's, kept across producers
        self._producer: KafkaProducer | None = None
        self._uncertain = False  # a commit failed: what the group has committed must be asked before the next

    def _ready(self) -> KafkaProducer:
        if self._producer is None:
            s = self._settings
            producer = make_producer(
                bootstrap=s.kafka_bootstrap,
                max_message_bytes=s.kafka_max_message_bytes,
                compression=s.kafka_compression,
                transactional_id=self._transactional_id,
                client_id="carspot-worker-dlq",
                # a killed worker's open transaction stalls readers this long, plus the broker's abort check interval
                transaction_timeout_ms=10_000,
                max_block_ms=int(self._timeout_s * 1000),  # init_transactions, metadata and buffer waits
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            try:
                kafka_txn.check_supported(producer)
                producer.init_transactions()
            except BaseException:
                kafka_txn.close_now(producer, timeout_s=1.0)
                raise
            self._producer = producer
        return self._producer

    def commit(self, *, offsets: Mapping[tuple[str, int], int], dead_letters: Sequence[DeadLetter]) -> None:
        try:
            producer = self._ready()
            if self._uncertain:
                offsets, dead_letters = self._not_yet_committed(offsets, dead_letters)
                self._uncertain = False
        except KafkaError as exc:
            self._uncertain = True
            raise CommitFailed(f"cannot start a transaction: {exc!r}") from exc
        if not offsets and not dead_letters:
            return
        try:
            producer.begin_transaction()
            for letter in dead_letters:
                producer.send(self._settings.dlq_topic, key=letter.key, value=letter.encode())
            if offsets:
                kafka_txn.send_offsets(
                    producer, _offsets(offsets), self._source.group_metadata(), timeout_s=self._timeout_s
                )
            kafka_txn.commit(producer, timeout_s=self._timeout_s)
        except KafkaError as exc:
            self._uncertain = True
            self._abort()
            raise CommitFailed(
                f"transaction of {len(dead_letters)} dead letter(s) and offsets failed: {exc!r}"
            ) from exc

    def _not_yet_committed(
        self, offsets: Mapping[tuple[str, int], int], dead_letters: Sequence[DeadLetter]
    ) -> tuple[dict[tuple[str, int], int], list[DeadLetter]]:
        """What of this batch the group has not committed yet (a commit that timed out may have succeeded)."""
        partitions = set(offsets) | {
            (letter.origin_topic, letter.origin_partition)
            for letter in dead_letters
            if letter.origin_topic is not None and letter.origin_partition is not None
        }
        committed = self._source.committed(sorted(partitions))
        ahead = {where: offset for where, offset in offsets.items() if offset > committed.get(where, -1)}
        letters = [
            letter
            for letter in dead_letters
            if letter.origin_topic is None
            or letter.origin_partition is None
            or letter.origin_offset is None
            or letter.origin_offset >= committed.get((letter.origin_topic, letter.origin_partition), -1)
        ]
        if len(ahead) < len(offsets) or len(letters) < len(dead_letters):
            log.warning(
                "an earlier transaction had committed after all: %d dead letter(s) and %d partition offset(s) "
                "of this batch were already in it",
                len(dead_letters) - len(letters),
                len(offsets) - len(ahead),
            )
        return ahead, letters

    def _abort(self) -> None:
        """Abort what is open; a producer that cannot (fenced, broker gone, stuck) is dropped, and the next
        commit starts a new one."""
        if self._producer is None:
            return
        try:
            kafka_txn.abort(self._producer, timeout_s=self._timeout_s)
        except KafkaError as exc:
            log.warning("could not abort the transaction (%r); starting a new producer", exc)
            self.close()

    def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            kafka_txn.close_now(producer, timeout_s=5.0)


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
