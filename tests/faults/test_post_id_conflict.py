"""A post id already stored with one picture, sent again with another (what ingest lets through while Redis
is down; issue 24, defect 8): the stored post wins, the other is dead-lettered as ``post_id_conflict``, and
its picture is neither analysed nor stored. On the real PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import create_engine, text

from carspot.pipeline.app import open_store
from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.worker import Worker
from carspot.store.migrate import migrate
from carspot.store.records import AnalysisRecord
from tests.integration.conftest import Isolated
from tests.pipeline.test_worker import analyze_one

ORPHAN_ANALYSES = """SELECT count(*) FROM analyses a
                     WHERE NOT EXISTS (SELECT 1 FROM posts p WHERE p.image_sha256 = a.image_sha256)"""


def post(post_id: str, picture: bytes) -> Post:
    return Post(
        post_id=post_id,
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(picture).hexdigest(),
        width=64,
        height=48,
        image=picture,
    )


def analysed(items: list[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
    """The analysis is not what is under test: one car per picture."""
    return [analyze_one(p, image) for p, image in items]


def test_the_stored_post_wins_and_the_conflicting_one_is_dead_lettered(isolated: Isolated) -> None:
    migrate(isolated.database_url)
    store = open_store(isolated.database_url, mode_for=lambda p: "detector")
    queue = InProcessQueue(topic="posts", capacity=16)
    for message in (post("p1", b"first"), post("p2", b"other"), post("p1", b"second"), post("p2", b"third")):
        queue.send_post(key=message.post_id, value=message.encode())
    queue.close_for_writing()
    dlq = MemoryDeadLetterSink()
    worker = Worker(
        source=queue,
        dead_letters=dlq,
        analyze=analysed,  # type: ignore[arg-type]
        decode_image=lambda data: np.zeros((48, 64, 3), np.uint8),
        write_batch=store.write_batch,
        known_images=store.known_images,
        stored_posts=store.stored_posts,
        batch_max_messages=2,  # p1/p2 first, then their conflicting copies in a later batch
        poll_timeout_s=0.01,
    )
    worker.run(until=lambda: queue.drained, max_messages=4)

    assert sorted((d.reason, d.post_id) for d in dlq.letters) == [
        ("post_id_conflict", "p1"),
        ("post_id_conflict", "p2"),
    ]
    engine = create_engine(isolated.database_url)
    try:
        with engine.connect() as conn:
            posts = dict(conn.execute(text("SELECT post_id, image_sha256 FROM posts")).all())
            analyses = conn.execute(text("SELECT count(*) FROM analyses")).scalar_one()
            orphans = conn.execute(text(ORPHAN_ANALYSES)).scalar_one()
    finally:
        engine.dispose()
    assert posts == {"p1": hashlib.sha256(b"first").hexdigest(), "p2": hashlib.sha256(b"other").hexdigest()}
    assert analyses == 2 and orphans == 0, "no picture analysed without a post pointing to it"


def test_a_conflict_inside_one_batch_is_caught_too(isolated: Isolated) -> None:
    migrate(isolated.database_url)
    store = open_store(isolated.database_url, mode_for=lambda p: "detector")
    queue = InProcessQueue(topic="posts", capacity=16)
    for message in (post("p1", b"first"), post("p1", b"second")):
        queue.send_post(key=message.post_id, value=message.encode())
    queue.close_for_writing()
    dlq = MemoryDeadLetterSink()
    Worker(
        source=queue,
        dead_letters=dlq,
        analyze=analysed,  # type: ignore[arg-type]
        decode_image=lambda data: np.zeros((48, 64, 3), np.uint8),
        write_batch=store.write_batch,
        stored_posts=store.stored_posts,
        poll_timeout_s=0.01,
    ).run(until=lambda: queue.drained, max_messages=2)
    assert [(d.reason, d.post_id) for d in dlq.letters] == [("post_id_conflict", "p1")]
