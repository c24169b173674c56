"""The worker stores the makes a post's text names with the post, analysed or linked, using the real matcher."""

from __future__ import annotations

from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.mentioning import mention_finder
from carspot.store.records import MentionRecord

from .test_worker import TOPIC, RecordingWriter, fill, make_worker, post


def test_each_post_carries_the_makes_its_text_names() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(
        queue,
        [
            post(1, text="New #mazda3 and a Qashqai").encode(),
            post(2, text="Harrison Ford at the premiere").encode(),
            post(3, link=True, text="Thanks @Toyota").encode(),
            post(4).encode(),
        ],
    )
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    make_worker(queue, writer, dlq, find_mentions=mention_finder()).run(until=lambda: queue.drained)
    assert not dlq.letters
    assert {p.post_id: p.mentions for p in writer.posts} == {
        "p1": (MentionRecord(make="Mazda", via="hashtag"), MentionRecord(make="Nissan", via="model")),
        "p2": (),
        "p3": (MentionRecord(make="Toyota", via="handle"),),
        "p4": (),
    }


def test_without_a_finder_posts_carry_no_mentions() -> None:
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post(1, text="#mazda3").encode()])
    writer, dlq = RecordingWriter(queue), MemoryDeadLetterSink()
    make_worker(queue, writer, dlq).run(until=lambda: queue.drained)
    assert [p.mentions for p in writer.posts] == [()]
