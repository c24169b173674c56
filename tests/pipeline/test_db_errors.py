"""The worker's database error policy (issue 24, defect 2): a refusal the database will repeat is the record's
fault and is dead-lettered; only what a later attempt can fix is retried."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import psycopg.errors
import pytest
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from carspot.pipeline.db_errors import is_transient
from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.worker import Worker
from carspot.store.records import AnalysisRecord, PostRecord

INDEX_ROW_TOO_BIG = OperationalError("INSERT", {}, psycopg.errors.ProgramLimitExceeded("index row size exceeds"))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OperationalError("INSERT", {}, Exception("connection refused")), True),
        (OperationalError("INSERT", {}, psycopg.errors.AdminShutdown("terminating connection")), True),
        (OperationalError("INSERT", {}, psycopg.errors.DeadlockDetected("deadlock")), True),
        (OperationalError("INSERT", {}, psycopg.errors.TooManyConnections("too many")), True),
        (InterfaceError("INSERT", {}, Exception("connection closed")), True),
        (INDEX_ROW_TOO_BIG, False),
        (DataError("INSERT", {}, psycopg.errors.StringDataRightTruncation("too long")), False),
        (IntegrityError("INSERT", {}, psycopg.errors.ForeignKeyViolation("fk")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_errors_are_classified_by_what_a_retry_can_change(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def post(n: int) -> Post:
    image = f"image-{n}".encode()
    return Post(
        post_id=f"p{n}",
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(image).hexdigest(),
        width=4,
        height=4,
        image=image,
    )


class RefusesP1:
    """A database that refuses post p1 for good (as PostgreSQL refuses an index row that is too big)."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.attempts_with_p1 = 0

    def __call__(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
        if any(p.post_id == "p1" for p in posts):
            self.attempts_with_p1 += 1
            raise INDEX_ROW_TOO_BIG
        self.stored.extend(p.post_id for p in posts)


def test_a_permanent_database_refusal_is_dead_lettered_and_the_rest_is_stored() -> None:
    queue = InProcessQueue(topic="posts", capacity=10)
    for n in range(3):
        queue.send_post(key=f"p{n}", value=post(n).encode())
    queue.close_for_writing()
    writer, dlq = RefusesP1(), MemoryDeadLetterSink()
    worker = Worker(
        source=queue,
        dead_letters=dlq,
        analyze=lambda items: [],
        decode_image=lambda data: np.zeros((4, 4, 3), np.uint8),
        write_batch=writer,
        known_images=lambda posts: {p.post_id for p in posts},  # already analysed: stored as posts only
        poll_timeout_s=0.01,
    )

    worker.run(until=lambda: queue.drained, max_messages=10)

    assert writer.stored == ["p0", "p2"] and queue.drained
    assert [(letter.reason, letter.post_id) for letter in dlq.letters] == [("store_rejected", "p1")]
    assert writer.attempts_with_p1 == 2, "tried in the batch, then alone: never retried as if transient"
