"""The worker keeps a thumbnail of every picture it analyses, written with the analysis, and the post's campaign.

A real photo (the bus scene, 810 x 1080) goes through the real decoder and the real store (SQLite); only the
analysis is the fake of ``test_worker``.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from carspot.ingest.images import decode_jpeg_rgb, normalize_image
from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.thumbnails import THUMBNAIL_MAX_BYTES, THUMBNAIL_MAX_SIDE, make_thumbnail
from carspot.pipeline.worker import Worker
from carspot.store.engine import create_engine_for
from carspot.store.migrate import migrate
from carspot.store.queries import thumbnail
from carspot.store.tables import Post as PostRow
from carspot.store.writer import AnalysisStore

from .test_worker import TOPIC, analyze, fill


def bus_post(scenes_dir: Path, *, campaign: str | None) -> Post:
    image = normalize_image((scenes_dir / "bus.jpg").read_bytes())
    return Post(
        post_id="folder:bus",
        source="folder",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(image.jpeg).hexdigest(),
        width=image.width,
        height=image.height,
        image=image.jpeg,
        campaign=campaign,
    )


def run_worker(tmp_path: Path, post: Post, **options: object) -> tuple[str, Worker]:
    url = f"sqlite:///{tmp_path / 'carspot.db'}"
    migrate(url)
    engine = create_engine_for(url)
    store = AnalysisStore(engine)
    queue = InProcessQueue(topic=TOPIC, capacity=10)
    fill(queue, [post.encode()])
    worker = Worker(
        source=queue,
        dead_letters=MemoryDeadLetterSink(),
        analyze=analyze,
        decode_image=decode_jpeg_rgb,
        write_batch=lambda posts, analyses: store.write_batch(posts=posts, analyses=analyses),
        poll_timeout_s=0.01,
        **options,  # type: ignore[arg-type]
    )
    worker.run(until=lambda: queue.drained)
    engine.dispose()
    return url, worker


def test_the_worker_stores_a_small_thumbnail_and_the_campaign_with_the_analysis(
    tmp_path: Path, scenes_dir: Path
) -> None:
    post = bus_post(scenes_dir, campaign="bus-week")
    url, worker = run_worker(tmp_path, post)
    engine = create_engine_for(url)
    try:
        stored = thumbnail(engine, image_sha256=post.image_sha256)
        with engine.connect() as conn:
            campaign = conn.execute(select(PostRow.campaign)).scalar_one()
    finally:
        engine.dispose()
    assert stored is not None and worker.stats.thumbnails == 1
    assert max(stored.width, stored.height) == THUMBNAIL_MAX_SIDE
    assert abs(stored.width / stored.height - post.width / post.height) < 0.01  # the shape is kept
    assert len(stored.jpeg) <= THUMBNAIL_MAX_BYTES
    with Image.open(io.BytesIO(stored.jpeg)) as im:
        assert im.format == "JPEG" and im.size == (stored.width, stored.height)
    assert campaign == "bus-week"


def test_a_thumbnail_that_cannot_be_made_leaves_the_analysis_stored(tmp_path: Path, scenes_dir: Path) -> None:
    def broken(image: np.ndarray) -> object:
        raise OSError("encoder crashed")

    post = bus_post(scenes_dir, campaign=None)
    url, worker = run_worker(tmp_path, post, make_thumbnail=broken)
    engine = create_engine_for(url)
    try:
        assert thumbnail(engine, image_sha256=post.image_sha256) is None
        with engine.connect() as conn:
            assert conn.execute(select(PostRow.post_id)).scalars().all() == ["folder:bus"]
    finally:
        engine.dispose()
    assert worker.stats.analyses == 1 and worker.stats.thumbnail_errors == 1


def test_a_small_picture_is_not_enlarged_and_a_busy_one_is_squeezed_under_the_byte_cap() -> None:
    small = make_thumbnail(np.full((60, 80, 3), 128, np.uint8))
    assert (small.width, small.height) == (80, 60)
    noise = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    squeezed = make_thumbnail(noise, max_bytes=12_000)
    assert (squeezed.width, squeezed.height) == (320, 240) and len(squeezed.jpeg) <= 12_000
    with pytest.raises(ValueError, match="RGB"):
        make_thumbnail(np.zeros((10, 10), np.uint8))
