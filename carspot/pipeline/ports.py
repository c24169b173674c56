"""The small interfaces the worker and the ingest loop talk to, so Kafka and an in-process queue are
interchangeable and tests can pass first-class fakes instead of patching libraries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from carspot.pipeline.deadletter import DeadLetter


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed message, free of any client library's types."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class MessageSource(Protocol):
    """What the worker consumes from: a Kafka consumer group member, or the embedded queue."""

    def poll(self, *, timeout_s: float, max_records: int) -> Sequence[Incoming]: ...

    @property
    def ready(self) -> bool:
        """True once messages can arrive (a consumer-group member has partitions assigned)."""

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit, per (topic, partition), the offset of the next message to read."""

    def seek(self, *, topic: str, partition: int, offset: int) -> None:
        """Re-read from ``offset`` on the next poll (used when a batch is cut short by time)."""

    def close(self) -> None: ...


class PostSink(Protocol):
    """Where ingest puts encoded posts (Kafka topic or in-process queue)."""

    def send_post(self, *, key: str, value: bytes) -> None: ...

    def flush(self) -> None: ...


class DeadLetterSink(Protocol):
    """Where bad input goes with its reason; ``flush`` returns once every record is durable."""

    def send(self, letter: DeadLetter) -> None: ...

    def flush(self) -> None: ...
