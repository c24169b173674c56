"""``--idle-timeout N`` means N seconds with nothing to read (issue 24, defect 5): a batch that takes longer than
N to process does not end the run while messages wait."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.worker import Worker
from carspot.store.records import AnalysisRecord, PostRecord
from tests.pipeline.test_worker import analyze_one


class Clock:
    """Seconds that pass only when the test says: a tick per reading, and the analysis' own duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.1
        return self.now


def post(n: int) -> Post:
    image = f"image-{n}".encode()
    return Post(
        post_id=f"p{n}",
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(image).hexdigest(),
        width=64,
        height=48,
        image=image,
    )


def test_a_batch_slower_than_the_idle_timeout_does_not_end_the_run_with_messages_waiting() -> None:
    clock = Clock()
    queue = InProcessQueue(topic="posts", capacity=10)
    for n in range(3):
        queue.send_post(key=f"p{n}", value=post(n).encode())
    stored: list[str] = []

    def slow_analysis(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
        clock.now += 30.0  # each batch takes 30 s, the idle timeout is 5 s
        return [analyze_one(p, image) for p, image in items]

    def write(posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
        stored.extend(p.post_id for p in posts)

    worker = Worker(
        source=queue,
        dead_letters=MemoryDeadLetterSink(),
        analyze=slow_analysis,
        decode_image=lambda data: np.zeros((48, 64, 3), np.uint8),
        write_batch=write,
        batch_max_messages=1,
        batch_max_seconds=1000.0,
        poll_timeout_s=0.001,
        clock=clock,
    )

    stats = worker.run(idle_timeout_s=5.0, timeout_s=10_000.0)

    assert stored == ["p0", "p1", "p2"] and stats.messages == 3
    assert clock.now - 90.0 >= 5.0, "it stopped only after idling"
