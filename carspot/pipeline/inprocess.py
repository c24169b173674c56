"""The embedded default's plumbing: an in-process queue that behaves like one Kafka partition, and a
dead-letter file, so ``carspot run`` uses the very same ingest loop and worker with nothing installed."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.ports import Incoming


class InProcessQueue:
    """A bounded single-partition log: ``send_post`` appends, ``poll`` reads from a cursor, ``commit`` drops
    what is durably processed, ``seek`` rewinds. Producers block while ``capacity`` messages are uncommitted."""

    def __init__(self, *, topic: str, capacity: int = 64) -> None:
        self._topic = topic
        self._capacity = capacity
        self._log: list[Incoming] = []  # uncommitted messages, oldest first
        self._next_offset = 0
        self._cursor = 0  # offset of the next message to hand out
        self._closed = False
        self._changed = threading.Condition()

    # PostSink
    def send_post(self, *, key: str, value: bytes) -> None:
        with self._changed:
            self._changed.wait_for(lambda: len(self._log) < self._capacity)
            self._log.append(Incoming(self._topic, 0, self._next_offset, key.encode(), value))
            self._next_offset += 1
            self._changed.notify_all()

    def flush(self) -> None:
        """Nothing buffered outside the log itself."""

    def close_for_writing(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def drained(self) -> bool:
        """No producer left and every message committed."""
        with self._changed:
            return self._closed and not self._log

    # MessageSource
    @property
    def ready(self) -> bool:
        return True

    def poll(self, *, timeout_s: float, max_records: int) -> Sequence[Incoming]:
        with self._changed:
            self._changed.wait_for(lambda: self._cursor < self._next_offset or self._closed, timeout=timeout_s)
            start = self._cursor - (self._next_offset - len(self._log))
            batch = self._log[start : start + max_records]
            self._cursor += len(batch)
            return batch

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        upto = offsets.get((self._topic, 0))
        if upto is None:
            return
        with self._changed:
            first = self._next_offset - len(self._log)
            del self._log[: max(0, upto - first)]
            self._changed.notify_all()

    def seek(self, *, topic: str, partition: int, offset: int) -> None:
        with self._changed:
            self._cursor = offset

    def close(self) -> None:
        """The worker leaving: nothing to release."""


class FileDeadLetterSink:
    """Dead letters as JSON lines (original bytes base64-encoded) under the data directory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self.count = 0

    def send(self, letter: DeadLetter) -> None:
        record = letter.as_json() | {"original_b64": base64.b64encode(letter.original).decode()}
        line = json.dumps(record) + "\n"  # ASCII escapes: writable whatever a letter carries
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            self.count += 1

    def flush(self) -> None:
        """Each ``send`` is written before it returns."""


class MemoryDeadLetterSink:
    """Dead letters kept in a list: for tests and for callers that report them themselves."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.flushed = 0

    def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def flush(self) -> None:
        self.flushed = len(self.letters)
