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


class CommitFailed(RuntimeError):
    """The offsets (and the dead letters sent with them) were not committed: the worker re-reads the batch.

    Raised for a rebalance that took the partitions away, a broker that did not answer in time, an aborted
    transaction; the stored results are idempotent, so re-reading changes nothing."""


class MessageSource(Protocol):
    """What the worker consumes from: a Kafka consumer group member, or the embedded queue."""

    def poll(self, *, timeout_s: float, max_records: int) -> Sequence[Incoming]: ...

    @property
    def ready(self) -> bool:
        """True once messages can arrive (a consumer-group member has partitions assigned)."""

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit, per (topic, partition), the offset of the next message to read; ``CommitFailed`` if not."""

    def seek(self, *, topic: str, partition: int, offset: int) -> None:
        """Re-read from ``offset`` on the next poll (used when a batch is cut short by time)."""

    def close(self) -> None: ...


class BatchOutcome(Protocol):
    """Publishes a batch's dead letters and commits its offsets as one atomic step (Kafka: one producer
    transaction carrying both), so a crash or an outage between the two never sends a letter twice: a replayed
    batch finds its earlier letters aborted. Raises ``CommitFailed`` when neither happened."""

    def commit(self, *, offsets: Mapping[tuple[str, int], int], dead_letters: Sequence[DeadLetter]) -> None: ...


class PostSink(Protocol):
    """Where ingest puts encoded posts (Kafka topic or in-process queue)."""

    def send_post(self, *, key: str, value: bytes) -> None: ...

    def flush(self) -> None: ...


class DeadLetterSink(Protocol):
    """Where bad input goes with its reason; ``flush`` returns once every record is durable."""

    def send(self, letter: DeadLetter) -> None: ...

    def flush(self) -> None: ...
