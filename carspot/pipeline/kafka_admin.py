"""Kafka for the operators' tools (kafka-python): who is in the analyzers' group, how far behind it is, the
dead-letter records of a time window, and sending a chosen record back. Read-only except ``KafkaReplaySink``;
one-shot clients, opened and closed per call, as a command line needs. ``kafka_io`` stays the pipeline's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from carspot.pipeline.kafka_io import make_producer

_READ_POLL_MS = 500
_MAX_EMPTY_POLLS = 20  # a window is read to the end offsets taken at the start; this bounds a stuck read


class KafkaUnavailable(RuntimeError):
    """The broker did not answer (the message says which call and why)."""


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One consumer of the group and the partitions of the posts topic it holds."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GroupState:
    """The consumer group as the coordinator describes it (``state`` e.g. Stable, Empty, Dead)."""

    group: str
    state: str
    members: tuple[GroupMember, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Committed position against the last readable offset of one partition; ``committed`` None means the
    group never committed there (it starts from the earliest record, so all of it is lag)."""

    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A record as read from a topic: where it is, when Kafka stamped it, and its bytes and headers."""

    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def _admin(bootstrap: str, *, timeout_ms: int) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","), client_id="carspot-status", request_timeout_ms=timeout_ms
        )
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc


def _reader(bootstrap: str, *, timeout_ms: int, max_bytes: int = 32 << 20) -> KafkaConsumer:
    """A consumer outside any group (assign, never subscribe), reading committed records only: the worker's
    dead letters are transactional, and an aborted one is not a dead letter."""
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            client_id="carspot-status",
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=max_bytes,
            fetch_max_bytes=max(52_428_800, max_bytes),
            request_timeout_ms=max(timeout_ms, 15_000),
            check_crcs=False,  # kafka-python's pure-Python CRC-32C reads ~1 MB/s: 20 s for 300 pictures
        )
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        raise KafkaUnavailable(f"topic {topic!r} does not exist (or the broker did not say)")
    return [TopicPartition(topic, p) for p in sorted(found)]


def describe_group(bootstrap: str, *, group: str, topic: str, timeout_ms: int = 10_000) -> GroupState:
    """The group's state and members, with the partitions of ``topic`` each one holds."""
    admin = _admin(bootstrap, timeout_ms=timeout_ms)
    try:
        described = admin.describe_groups([group])[group]
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot describe group {group!r}: {exc!r}") from exc
    finally:
        admin.close()
    members = tuple(
        sorted(
            (_member(m, topic=topic) for m in described.get("members") or ()),
            key=lambda m: (m.partitions[:1] or (1 << 30,), m.member_id),
        )
    )
    return GroupState(group=group, state=str(described.get("group_state") or "Unknown"), members=members)


def _member(raw: dict[str, Any], *, topic: str) -> GroupMember:
    assignment = raw.get("member_assignment")
    partitions: list[int] = []
    if isinstance(assignment, dict):
        for assigned in assignment.get("assigned_partitions") or ():
            if assigned.get("topic") == topic:
                partitions.extend(int(p) for p in assigned.get("partitions") or ())
    return GroupMember(
        member_id=str(raw.get("member_id", "")),
        client_id=str(raw.get("client_id", "")),
        host=str(raw.get("client_host", "")).lstrip("/"),
        partitions=tuple(sorted(partitions)),
    )


def group_lag(bootstrap: str, *, group: str, topic: str, timeout_ms: int = 10_000) -> list[PartitionLag]:
    """Per partition of ``topic``: the group's committed offset, the last committed record's end, the lag."""
    admin = _admin(bootstrap, timeout_ms=timeout_ms)
    try:
        committed_all = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot read the offsets of group {group!r}: {exc!r}") from exc
    finally:
        admin.close()
    committed = {tp.partition: meta.offset for tp, meta in committed_all.items() if tp.topic == topic}
    consumer = _reader(bootstrap, timeout_ms=timeout_ms)
    try:
        partitions = _partitions(consumer, topic)
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot read the offsets of {topic!r}: {exc!r}") from exc
    finally:
        consumer.close()
    out = []
    for tp in partitions:
        position = committed.get(tp.partition)
        end = int(ends[tp])
        start = position if position is not None and position >= 0 else int(starts[tp])
        out.append(PartitionLag(partition=tp.partition, committed=position, end=end, lag=max(0, end - max(start, 0))))
    return out


def read_window(
    bootstrap: str,
    *,
    topic: str,
    since: datetime | None = None,
    until: datetime | None = None,
    timeout_s: float = 60.0,
    max_bytes: int = 32 << 20,
) -> Iterator[TopicRecord]:
    """The committed records of ``topic`` stamped in ``[since, until)``, in offset order within each partition,
    from the first offset at or after ``since`` (Kafka's time index) to the end offsets taken when it starts.
    :class:`KafkaUnavailable` when that end is not reached within ``timeout_s``."""
    consumer = _reader(bootstrap, timeout_ms=int(timeout_s * 1000), max_bytes=max_bytes)
    try:
        yield from _read(consumer, topic=topic, since=since, until=until, timeout_s=timeout_s)
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot read {topic!r}: {exc!r}") from exc
    finally:
        consumer.close()


def _read(
    consumer: KafkaConsumer, *, topic: str, since: datetime | None, until: datetime | None, timeout_s: float
) -> Iterator[TopicRecord]:
    partitions = _partitions(consumer, topic)
    ends = consumer.end_offsets(partitions)
    starts = consumer.beginning_offsets(partitions)
    if since is not None:
        found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
        starts = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in partitions}
    todo = [tp for tp in partitions if starts[tp] < ends[tp]]
    if not todo:
        return
    consumer.assign(todo)
    for tp in todo:
        consumer.seek(tp, starts[tp])
    until_ms = None if until is None else int(until.timestamp() * 1000)
    deadline = time.monotonic() + timeout_s
    empty = 0
    while todo and empty < _MAX_EMPTY_POLLS and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=_READ_POLL_MS)
        empty = 0 if polled else empty + 1
        for tp, batch in sorted(polled.items(), key=lambda kv: kv[0].partition):
            for r in batch:
                if r.offset < ends[tp] and (until_ms is None or r.timestamp < until_ms):
                    yield _record(r)
        todo = [tp for tp in todo if consumer.position(tp) < ends[tp]]
        consumer.pause(*[tp for tp in consumer.assignment() if tp not in todo])
    if todo:  # a partial window must not pass for a whole one (counts by reason would be silently low)
        behind = ", ".join(f"{tp.partition} at {consumer.position(tp)} of {ends[tp]}" for tp in todo)
        raise KafkaUnavailable(f"{topic}: read cut after {timeout_s:.0f} s, partitions not read to the end: {behind}")


def _record(r: Any) -> TopicRecord:
    return TopicRecord(
        partition=r.partition,
        offset=r.offset,
        timestamp=datetime.fromtimestamp(r.timestamp / 1000, UTC),
        key=r.key,
        value=r.value,
        headers=tuple((str(k), bytes(v or b"")) for k, v in (r.headers or ())),
    )


def read_records(
    bootstrap: str, *, topic: str, at: Sequence[tuple[int, int]], timeout_s: float = 30.0, max_bytes: int = 32 << 20
) -> list[TopicRecord]:
    """The committed records at the given (partition, offset) places; a place with no such record is left out."""
    consumer = _reader(bootstrap, timeout_ms=int(timeout_s * 1000), max_bytes=max_bytes)
    try:
        partitions = {tp.partition: tp for tp in _partitions(consumer, topic)}
        out: list[TopicRecord] = []
        for partition, offset in at:
            tp = partitions.get(partition)
            if tp is None or offset < 0:
                continue
            out.extend(
                r
                for r in _read_one(consumer, tp, offset, timeout_s=timeout_s)
                if (r.partition, r.offset) == (partition, offset)
            )
        return out
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot read {topic!r}: {exc!r}") from exc
    finally:
        consumer.close()


def _read_one(consumer: KafkaConsumer, tp: TopicPartition, offset: int, *, timeout_s: float) -> list[TopicRecord]:
    end = consumer.end_offsets([tp])[tp]
    if offset >= end:
        return []
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and consumer.position(tp) <= offset:
        for r in consumer.poll(timeout_ms=_READ_POLL_MS).get(tp, []):
            if r.offset == offset:
                return [_record(r)]
            if r.offset > offset:  # the offset was a transaction marker or an aborted record
                return []
    return []


class KafkaReplaySink:
    """Sends records to one topic with headers, each acknowledged before ``send`` returns (ReplaySink)."""

    def __init__(self, *, bootstrap: str, topic: str, max_message_bytes: int, compression: str | None) -> None:
        self._topic = topic
        try:
            self._producer: KafkaProducer = make_producer(
                bootstrap=bootstrap,
                max_message_bytes=max_message_bytes,
                compression=compression,
                client_id="carspot-dlq-replay",
                linger_ms=0,
                max_block_ms=15_000,
            )
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc

    def send(self, *, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        try:
            self._producer.send(self._topic, key=key, value=value, headers=list(headers)).get(timeout=30)
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge a replay to {self._topic}: {exc!r}") from exc

    def close(self) -> None:
        self._producer.close(timeout=5)
