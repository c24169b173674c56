"""The worker accounts for where its time goes: every stage of a batch, and Python's garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import numpy as np

from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.worker import Worker
from carspot.store.records import AnalysisRecord
from tests.pipeline.test_worker import TOPIC, RecordingWriter, analyze, decode, fill, make_worker, post


def test_a_run_reports_the_time_of_each_stage() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(3)])
    writer = RecordingWriter(queue)
    stats = make_worker(queue, writer, MemoryDeadLetterSink(), known_images=lambda posts: set()).run(
        until=lambda: queue.drained
    )
    assert {"poll", "lookup", "decode", "analyse", "write", "commit"} <= set(stats.seconds)


def test_garbage_collections_during_the_run_are_counted_and_the_hook_is_removed_after() -> None:
    def analyze_collecting(items: Sequence[tuple[Post, np.ndarray]]) -> Sequence[AnalysisRecord | Exception]:
        gc.collect()
        return analyze(items)

    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(i).encode() for i in range(2)])
    hooks = len(gc.callbacks)
    worker = Worker(
        source=queue,
        dead_letters=MemoryDeadLetterSink(),
        analyze=analyze_collecting,
        decode_image=decode,
        write_batch=RecordingWriter(queue),
        poll_timeout_s=0.01,
    )
    stats = worker.run(until=lambda: queue.drained)
    assert stats.seconds["gc"] > 0
    assert len(gc.callbacks) == hooks
