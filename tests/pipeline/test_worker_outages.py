"""A worker waits out outages of its services (issue 24, defect 4): a database that is down is retried with a
warning per attempt until it is back, a stop request ends the wait without committing, and a commit that fails
(broker restart, rebalance) re-reads the batch instead of killing the process."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.ports import CommitFailed
from carspot.pipeline.worker import Worker
from carspot.store.records import AnalysisRecord, PostRecord

DOWN = OperationalError("INSERT", {}, Exception("connection refused"))


def link(n: int) -> bytes:
    return Post(
        post_id=f"p{n}",
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(b"%d" % n).hexdigest(),
        width=4,
        height=4,
        image=None,
    ).encode()


def filled(count: int) -> InProcessQueue:
    queue = InProcessQueue(topic="posts", capacity=32)
    for n in range(count):
        queue.send_post(key=f"p{n}", value=link(n))
    queue.close_for_writing()
    return queue


class Database:
    """Down for the first ``down_for`` calls, then up; keeps what was written."""

    def __init__(self, *, down_for: int) -> None:
        self.down_for = down_for
        self.calls = 0
        self.stored: list[str] = []

    def __call__(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
        self.calls += 1
        if self.calls <= self.down_for:
            raise DOWN
        self.stored.extend(p.post_id for p in posts)


def worker_on(source: InProcessQueue, database: Database, **options: object) -> Worker:
    return Worker(
        source=source,
        dead_letters=MemoryDeadLetterSink(),
        analyze=lambda items: [],
        decode_image=lambda data: np.zeros((4, 4, 3), np.uint8),
        write_batch=database,
        poll_timeout_s=0.001,
        backoff_max_s=0.001,
        **options,  # type: ignore[arg-type]
    )


def test_a_database_down_for_many_attempts_is_waited_out_with_a_warning_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, database = filled(3), Database(down_for=20)  # more than the 8 attempts that used to kill the worker
    with caplog.at_level(logging.WARNING, logger="carspot.pipeline.worker"):
        worker_on(queue, database).run(until=lambda: queue.drained, max_messages=3)
    assert database.stored == ["p0", "p1", "p2"] and queue.drained
    warnings = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(warnings) == 20 and "attempt 20" in warnings[-1].getMessage()


def test_a_stop_during_an_outage_ends_the_wait_and_commits_nothing() -> None:
    queue = filled(3)

    class StopsDuringOutage(Database):
        def __call__(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
            if self.calls == 3:
                worker.stop()  # SIGTERM while the database is down
            super().__call__(posts, analyses)

    database = StopsDuringOutage(down_for=1000)
    worker = worker_on(queue, database)
    worker.run(until=lambda: queue.drained)
    assert database.calls == 4 and not database.stored
    assert not queue.drained, "nothing committed: the next worker re-reads all three"


class CommitFailsOnce(InProcessQueue):
    """An in-process partition whose first commit fails, as Kafka's does when the broker restarts."""

    def __init__(self) -> None:
        super().__init__(topic="posts", capacity=32)
        self.failed = False

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if not self.failed:
            self.failed = True
            raise CommitFailed("KafkaTimeoutError: commit timed out")
        super().commit(offsets)


def test_a_failed_commit_re_reads_the_batch_and_the_worker_goes_on() -> None:
    queue = CommitFailsOnce()
    for n in range(3):
        queue.send_post(key=f"p{n}", value=link(n))
    queue.close_for_writing()
    database = Database(down_for=0)
    stats = worker_on(queue, database).run(until=lambda: queue.drained, timeout_s=60)
    assert queue.failed and queue.drained
    assert database.stored == ["p0", "p1", "p2", "p0", "p1", "p2"], "written twice: idempotent in the store"
    assert stats.batches == 1
