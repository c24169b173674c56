"""The worker's contract: results durable before offsets move, bad messages dead-lettered, batches cut by time."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.worker import Worker
from carspot.store.records import AnalysisRecord, PostRecord, RegionRecord

TOPIC = "carspot.posts"


def post(n: int, *, link: bool = False, text: str | None = None) -> Post:
    image = f"image-{n}".encode()
    return Post(
        post_id=f"p{n}",
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(image).hexdigest(),
        width=64,
        height=48,
        image=None if link else image,
        text=text,
    )


def analyze_one(p: Post, image: np.ndarray) -> AnalysisRecord:
    return AnalysisRecord(
        image_sha256=p.image_sha256,
        width=p.width,
        height=p.height,
        mode="detector",
        detector="fake",
        model_version="test",
        regions=(RegionRecord(index=0, x1=1, y1=2, x2=10, y2=20, score=0.9, label="car"),),
        brands=(),
        analyzed_at=datetime.now(UTC),
        duration_ms=1.0,
    )


def one_by_one(
    analyze: Callable[[Post, np.ndarray], AnalysisRecord],
) -> Callable[[Sequence[tuple[Post, np.ndarray]]], list[AnalysisRecord | Exception]]:
    """A per-image fake as the worker's batch analysis (an exception stays with its image)."""

    def analyze_batch(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
        results: list[AnalysisRecord | Exception] = []
        for p, image in items:
            try:
                results.append(analyze(p, image))
            except Exception as exc:
                results.append(exc)
        return results

    return analyze_batch


analyze = one_by_one(analyze_one)


def decode(data: bytes) -> np.ndarray:
    if data.startswith(b"broken"):
        raise ValueError("cannot decode")
    return np.zeros((48, 64, 3), np.uint8)


class RecordingWriter:
    """Keeps what was written, and what the queue had committed at that moment."""

    def __init__(self, queue: InProcessQueue, *, failures: Sequence[Exception] = ()) -> None:
        self.queue = queue
        self.failures = list(failures)
        self.posts: list[PostRecord] = []
        self.analyses: list[AnalysisRecord] = []
        self.calls = 0

    def __call__(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.posts.extend(posts)
        self.analyses.extend(analyses)


def make_worker(queue: InProcessQueue, writer: RecordingWriter, dlq: MemoryDeadLetterSink, **kw: object) -> Worker:
    return Worker(
        source=queue,
        dead_letters=dlq,
        analyze=analyze,
        decode_image=decode,
        write_batch=writer,
        poll_timeout_s=0.01,
        **kw,  # type: ignore[arg-type]
    )


def fill(queue: InProcessQueue, values: Sequence[bytes]) -> None:
    for i, value in enumerate(values):
        queue.send_post(key=f"k{i}", value=value)
    queue.close_for_writing()


def test_every_post_is_written_once_and_offsets_follow_the_write() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=100)
    fill(queue, [post(i).encode() for i in range(10)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    stats = make_worker(queue, writer, dlq, batch_max_messages=4).run(until=lambda: queue.drained)
    assert [p.post_id for p in writer.posts] == [f"p{i}" for i in range(10)]
    assert len(writer.analyses) == 10 and stats.analyses == 10 and stats.cars == 10
    assert stats.batches == 3 and queue.drained and not dlq.letters


def test_bad_messages_go_to_the_dead_letter_sink_with_reasons_and_the_rest_is_stored() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=100)
    bad_image = b"broken-jpeg"
    bad_post = Post(
        post_id="p-bad-image",
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(bad_image).hexdigest(),
        width=1,
        height=1,
        image=bad_image,
    )
    fill(
        queue,
        [
            post(0).encode(),
            b"not a post",
            bad_post.encode(),
            post(3, text="nulXXXXXX").encode().replace(b"nulXXXXXX", b"nul\\u0000"),  # another producer's
            post(4).encode(),
        ],
    )
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    stats = make_worker(queue, writer, dlq).run(until=lambda: queue.drained)
    assert [p.post_id for p in writer.posts] == ["p0", "p4"]
    reasons = {letter.reason: letter for letter in dlq.letters}
    assert set(reasons) == {"decode_error", "image_decode_error", "invalid_post"}
    assert reasons["decode_error"].original == b"not a post"
    assert reasons["decode_error"].origin_offset == 1
    assert reasons["image_decode_error"].post_id == "p-bad-image"
    assert dict(stats.dead_letters) == {"decode_error": 1, "image_decode_error": 1, "invalid_post": 1}
    assert queue.drained


def test_a_link_post_is_stored_without_analysis() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(1).encode(), post(1, link=True).encode()])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    stats = make_worker(queue, writer, dlq).run(until=lambda: queue.drained)
    assert len(writer.posts) == 2 and len(writer.analyses) == 1 and stats.links == 1


def test_offsets_are_not_committed_when_the_write_fails() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(3)])
    down = OperationalError("INSERT", {}, Exception("connection refused"))
    writer, dlq = RecordingWriter(queue, failures=[down] * 2), MemoryDeadLetterSink()
    worker = make_worker(queue, writer, dlq, write_attempts=2)
    with pytest.raises(OperationalError):
        worker.run(until=lambda: queue.drained)
    assert not queue.drained  # nothing committed: a restarted worker re-reads all three


def test_transient_write_errors_are_retried() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(3)])
    down = OperationalError("INSERT", {}, Exception("connection reset"))
    writer, dlq = RecordingWriter(queue, failures=[down]), MemoryDeadLetterSink()
    make_worker(queue, writer, dlq).run(until=lambda: queue.drained)
    assert len(writer.posts) == 3 and writer.calls == 2 and queue.drained


def test_a_record_the_database_refuses_is_isolated_and_dead_lettered() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(3)])
    refused = IntegrityError("INSERT", {}, Exception("violates check"))

    class RefusesP1(RecordingWriter):
        def __call__(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
            self.calls += 1
            if any(p.post_id == "p1" for p in posts):
                raise refused
            super().__call__(posts, analyses)

    writer, dlq = RefusesP1(queue), MemoryDeadLetterSink()
    make_worker(queue, writer, dlq).run(until=lambda: queue.drained)
    assert [p.post_id for p in writer.posts] == ["p0", "p2"]
    assert [(d.reason, d.post_id) for d in dlq.letters] == [("store_rejected", "p1")]
    assert Post.decode(dlq.letters[0].original).post_id == "p1"  # the original message, whole


def test_a_slow_batch_is_cut_by_time_and_the_rest_re_read() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(6)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()

    def slow(p: Post, image: np.ndarray) -> AnalysisRecord:
        time.sleep(0.06)
        return analyze_one(p, image)

    worker = Worker(
        source=queue,
        dead_letters=dlq,
        analyze=one_by_one(slow),
        analysis_batch_images=1,
        decode_image=decode,
        write_batch=writer,
        batch_max_messages=6,
        batch_max_seconds=0.1,
        poll_timeout_s=0.01,
    )
    stats = worker.run(until=lambda: queue.drained)
    assert [p.post_id for p in writer.posts] == [f"p{i}" for i in range(6)]
    assert stats.batches >= 3  # ~2 messages fit in 0.1 s


def test_stop_finishes_the_batch_then_returns() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    for i in range(4):
        queue.send_post(key=f"k{i}", value=post(i).encode())
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    worker = make_worker(queue, writer, dlq, batch_max_messages=2)

    def analyze_then_stop(p: Post, image: np.ndarray) -> AnalysisRecord:
        worker.stop()
        return analyze_one(p, image)

    worker._analyze = one_by_one(analyze_then_stop)
    stats = worker.run()
    assert stats.batches == 1 and len(writer.posts) == 2


def test_max_messages_bounds_the_run() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    for i in range(5):
        queue.send_post(key=f"k{i}", value=post(i).encode())
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    stats = make_worker(queue, writer, dlq).run(max_messages=3)
    assert stats.messages == 3 and len(writer.posts) == 3


def test_a_picture_already_analysed_is_linked_not_analysed_again() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(4)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    asked: list[list[str]] = []

    def known(posts: Sequence[Post]) -> set[str]:
        asked.append([p.post_id for p in posts])
        return {"p1", "p3"}

    stats = make_worker(queue, writer, dlq, known_images=known).run(until=lambda: queue.drained)
    assert asked == [["p0", "p1", "p2", "p3"]]  # one question per batch
    assert [p.post_id for p in writer.posts] == ["p0", "p1", "p2", "p3"]
    assert [a.image_sha256 for a in writer.analyses] == [post(0).image_sha256, post(2).image_sha256]
    assert stats.analyses == 2 and stats.already_analysed == 2


def test_the_pictures_of_a_batch_are_analysed_together_in_groups_and_stored_in_message_order() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=20)
    fill(queue, [post(i, link=i == 5).encode() for i in range(10)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    groups: list[list[str]] = []

    def analyze_batch(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
        groups.append([p.post_id for p, _ in items])
        return analyze(items)

    worker = make_worker(queue, writer, dlq, batch_max_messages=10, analysis_batch_images=4)
    worker._analyze = analyze_batch
    stats = worker.run(until=lambda: queue.drained)
    assert groups == [["p0", "p1", "p2", "p3"], ["p4", "p6", "p7", "p8"], ["p9"]]  # the link needs no analysis
    assert [p.post_id for p in writer.posts] == [f"p{i}" for i in range(10)]
    assert stats.analyses == 9 and stats.links == 1 and stats.batches == 1


def test_an_image_whose_analysis_fails_is_dead_lettered_alone_and_its_group_is_stored() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(4)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()

    class UnsupportedMode(ValueError):
        reason = "unsupported_mode"

    def fails_on_p2(p: Post, image: np.ndarray) -> AnalysisRecord:
        if p.post_id == "p2":
            raise UnsupportedMode("no such mode")
        return analyze_one(p, image)

    worker = make_worker(queue, writer, dlq, analysis_batch_images=4)
    worker._analyze = one_by_one(fails_on_p2)
    stats = worker.run(until=lambda: queue.drained)
    assert [p.post_id for p in writer.posts] == ["p0", "p1", "p3"]
    assert [a.image_sha256 for a in writer.analyses] == [post(i).image_sha256 for i in (0, 1, 3)]
    assert [(d.reason, d.post_id) for d in dlq.letters] == [("unsupported_mode", "p2")]
    assert Post.decode(dlq.letters[0].original).post_id == "p2" and stats.analyses == 3


def test_an_analysis_that_breaks_as_a_whole_dead_letters_only_its_group() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(4)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()

    def breaks_on_p3(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
        if any(p.post_id == "p3" for p, _ in items):
            raise MemoryError("out of memory")
        return analyze(items)

    worker = make_worker(queue, writer, dlq, analysis_batch_images=2)
    worker._analyze = breaks_on_p3
    worker.run(until=lambda: queue.drained)
    assert [p.post_id for p in writer.posts] == ["p0", "p1"]
    assert [(d.reason, d.post_id) for d in dlq.letters] == [("analysis_error", "p2"), ("analysis_error", "p3")]
    assert queue.drained  # nothing re-read forever: the dead letters hold the originals


def test_the_time_cut_falls_between_groups_of_pictures() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(6)])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    groups: list[int] = []

    def slow_group(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
        groups.append(len(items))
        time.sleep(0.15)
        return analyze(items)

    worker = make_worker(queue, writer, dlq, batch_max_messages=6, batch_max_seconds=0.1, analysis_batch_images=2)
    worker._analyze = slow_group
    stats = worker.run(until=lambda: queue.drained)
    assert groups == [2, 2, 2]  # each group overran the 0.1 s: the next one waits for the next poll
    assert stats.batches == 3 and [p.post_id for p in writer.posts] == [f"p{i}" for i in range(6)]
