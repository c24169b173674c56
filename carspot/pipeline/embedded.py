"""The embedded default: ingest and analysis in one process, an in-process queue and SQLite.

It runs the very same ingest loop, message encoding and worker as the distributed deployment, so what a
laptop shows is what production does, minus Kafka, PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carspot.ingest.errors import ImageError
from carspot.ingest.images import decode_jpeg_rgb
from carspot.ingest.loop import IngestStats
from carspot.pipeline.app import (
    ingest_posts,
    load_analysis,
    make_normalizer,
    open_source,
    open_store,
)
from carspot.pipeline.ingesting import SinkEmitter
from carspot.pipeline.inprocess import FileDeadLetterSink, InProcessQueue
from carspot.pipeline.lifecycle import install_stop_handlers
from carspot.pipeline.mentioning import mention_finder
from carspot.pipeline.message import Post
from carspot.pipeline.settings import Settings
from carspot.pipeline.worker import Worker, WorkerStats
from carspot.store.migrate import migrate


@dataclass(frozen=True)
class RunSummary:
    ingest: IngestStats
    worker: WorkerStats
    seconds: float
    database: str
    dead_letter_file: Path
    top_makes: tuple[tuple[str, int], ...] = ()  # rank-1 make -> images, over the run's analyses
    unidentified: int = 0  # images with a car but no confident make, over the run's analyses

    def render(self) -> str:
        rejected = sum(self.ingest.rejected.values()) + sum(self.worker.dead_letters.values())
        rate = self.worker.analyses / self.seconds if self.seconds else 0.0
        lines = [
            f"posts read      {self.ingest.seen}",
            f"images analysed {self.worker.analyses}  (+{self.worker.links} reposts linked to an analysis)",
            f"cars found      {self.worker.cars}",
            "top makes       " + (", ".join(f"{make} {n}" for make, n in self.top_makes) or "none"),
            f"unidentified    {self.unidentified}  (images with a car but no make as confident as "
            "CARSPOT_MIN_BRAND_CONFIDENCE)",
            f"rejected        {rejected}  {dict(self.ingest.rejected + self.worker.dead_letters)}",
            f"time            {self.seconds:.2f} s  ({rate:.1f} images/s)",
            f"results         {_shown(self.database)}",
        ]
        if rejected:
            lines.append(f"dead letters    {self.dead_letter_file}")
        return "\n".join(lines)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def run_embedded(
    *, settings: Settings, source: str, max_posts: int | None = None, database_url: str | None = None
) -> RunSummary:
    """Ingest ``source`` and analyse every post into the database every command uses (``database_url``, by
    default ``settings.resolved_database_url``: SQLite under ``settings.data_dir`` unless told otherwise)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    posts = open_source(source, settings=settings)
    url = database_url or settings.resolved_database_url
    migrate(url)
    analysis = load_analysis(settings)
    store = open_store(url, mode_for=analysis.mode_for)
    queue = InProcessQueue(topic=settings.posts_topic, capacity=2 * settings.batch_max_messages)
    dead_letters = FileDeadLetterSink(settings.data_dir / "dead-letters.jsonl")
    emitter = SinkEmitter(posts=queue, dead_letters=dead_letters)
    worker = Worker(
        source=queue,
        dead_letters=dead_letters,
        analyze=analysis.analyse_batch,
        decode_image=decode_jpeg_rgb,
        write_batch=store.write_batch,
        known_images=store.known_images,
        stored_posts=store.stored_posts,
        batch_max_messages=settings.batch_max_messages,
        batch_max_seconds=settings.batch_max_seconds,
        analysis_batch_images=settings.analysis_batch_images,
        poll_timeout_s=0.2,
        max_original_bytes=settings.dlq_max_original_bytes,
        find_mentions=mention_finder(),
    )
    stopping = threading.Event()

    def stop() -> None:
        stopping.set()
        worker.stop()

    install_stop_handlers(stop)
    stats: list[IngestStats] = []
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            result = ingest_posts(
                settings,
                posts,
                emitter=emitter,
                should_stop=stopping.is_set,
                max_posts=max_posts,
                in_memory=True,
            )
            stats.append(result)
        except BaseException as exc:
            errors.append(exc)
        finally:
            queue.close_for_writing()

    started = time.monotonic()
    run_started = datetime.now(UTC)
    producer = threading.Thread(target=ingest, name="carspot-ingest", daemon=True)
    producer.start()
    worker_stats = worker.run(until=lambda: queue.drained)
    producer.join()
    if errors:
        raise RuntimeError("ingest failed") from errors[0]
    finished = datetime.now(UTC)
    until = finished + timedelta(seconds=1)
    return RunSummary(
        ingest=stats[0],
        worker=worker_stats,
        seconds=time.monotonic() - started,
        database=url,
        dead_letter_file=dead_letters.path,
        top_makes=top_makes(url, since=run_started, until=until, rank_text_mentions=settings.rank_text_mentions),
        unidentified=unidentified_cars(url, since=run_started, until=until),
    )


def top_makes(
    url: str, *, since: datetime, until: datetime, limit: int = 5, rank_text_mentions: bool = False
) -> tuple[tuple[str, int], ...]:
    """The most frequent rank-1 makes of the images analysed in the window (the dashboard's brand share, text
    mentions ranked first when asked, as the dashboard does with ``CARSPOT_RANK_TEXT_MENTIONS``)."""
    from carspot.store.engine import create_engine_for
    from carspot.store.queries import brand_share

    engine = create_engine_for(url)
    try:
        shares = brand_share(engine, since=since, until=until, rank_text_mentions=rank_text_mentions)
    finally:
        engine.dispose()
    return tuple((s.make, s.images) for s in shares if s.images > 0)[:limit]


def unidentified_cars(url: str, *, since: datetime, until: datetime) -> int:
    """The images analysed in the window with a car but no confident make (the dashboard counts them apart)."""
    from carspot.store.engine import create_engine_for
    from carspot.store.queries import unidentified_images

    engine = create_engine_for(url)
    try:
        return unidentified_images(engine, since=since, until=until)
    finally:
        engine.dispose()


def analyze_files(*, settings: Settings, paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Analyse local files without storing anything; a bad file gets an error entry, not a crash."""
    analysis = load_analysis(settings)
    normalize = make_normalizer(settings)
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            image = normalize(path.read_bytes())
        except (ImageError, OSError) as exc:
            results.append({"image": str(path), "error": getattr(exc, "reason", "unreadable"), "detail": str(exc)})
            continue
        post = Post(
            post_id=f"local:{path}",
            source="local",
            ingested_at=datetime.now(UTC),
            image_sha256=image.sha256,
            width=image.width,
            height=image.height,
            image=image.jpeg,
        )
        record = analysis(post, decode_jpeg_rgb(image.jpeg))
        results.append(
            {
                "image": str(path),
                "width": record.width,
                "height": record.height,
                "mode": record.mode,
                "detector": record.detector,
                "model_version": record.model_version,
                "duration_ms": round(record.duration_ms, 2),
                "regions": [
                    {
                        "box": [round(r.x1, 1), round(r.y1, 1), round(r.x2, 1), round(r.y2, 1)],
                        "score": round(r.score, 4),
                        "label": r.label,
                        "brands": [{"make": b.make, "score": b.score} for b in r.brands],
                        "confidence": r.confidence,
                        "unidentified": r.unidentified,
                    }
                    for r in record.regions
                ],
                "brands": [{"make": b.make, "score": b.score} for b in record.brands],
                "confidence": record.confidence,
                "unidentified": record.unidentified,
            }
        )
    return results
