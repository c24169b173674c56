"""The composition root: builds every part from Settings and wires them with explicit arguments.

Heavy models are loaded here once, at start-up, and handed to the analysis as callables.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from carspot.analysis.modes import (
    Analysis,
    ClassifierSource,
    detector_mode,
    region_search_mode,
    standard_mode,
)
from carspot.detector.detections import CarDetector
from carspot.ingest.dedup import Deduplicator, InMemoryDeduplicator, RedisDeduplicator
from carspot.ingest.images import NormalizedImage, normalize_image
from carspot.ingest.loop import IngestedPost, IngestObserver, IngestStats, Rejection, run_ingest
from carspot.ingest.phash import NearDuplicateIndex
from carspot.ingest.sources import BrokenRecord, FolderSource, JsonlSource, RawPost
from carspot.pipeline.blas import cap_blas_threads
from carspot.pipeline.message import Post
from carspot.pipeline.models import CurrentClassifier
from carspot.pipeline.settings import AnalysisMode, Settings
from carspot.pipeline.worker import BatchWriter, KnownImages, StoredPosts

log = logging.getLogger("carspot.pipeline.app")

# The Post header and Kafka's record overhead must fit beside the JPEG in one message.
MESSAGE_OVERHEAD_BYTES = 64 << 10


class ConfigError(ValueError):
    """The settings or the command line ask for something that cannot work."""


def split_source(spec: str) -> tuple[str, str]:
    """``folder:PATH`` -> ("folder", PATH); a bare existing directory is a folder; "" when the kind is missing."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        return ("folder", spec) if Path(spec).is_dir() else ("", spec)
    return kind, rest


def open_source(spec: str, *, settings: Settings) -> Iterable[RawPost | BrokenRecord]:
    """``folder:PATH`` or ``jsonl:PATH`` (a bare existing directory counts as a folder)."""
    kind, rest = split_source(spec)
    path = Path(rest).expanduser()
    if kind == "folder":
        if not path.is_dir():
            raise ConfigError(f"folder source {path} is not a directory")
        return FolderSource(path, max_bytes=settings.image_max_bytes)
    if kind == "jsonl":
        if not path.is_file():
            raise ConfigError(f"jsonl source {path} is not a file")
        return JsonlSource(
            path,
            max_bytes=settings.image_max_bytes,
            image_dirs=settings.jsonl_image_dirs,
            denied_dirs=[settings.services_dir],  # services.env holds the database password
        )
    raise ConfigError(f"unknown source {spec!r}: use folder:PATH or jsonl:PATH")


def make_normalizer(settings: Settings) -> Callable[[bytes], NormalizedImage]:
    return functools.partial(
        normalize_image,
        max_side=settings.image_max_side,
        max_pixels=settings.image_max_pixels,
        max_bytes=settings.image_max_bytes,
        max_encoded_bytes=settings.kafka_max_message_bytes - MESSAGE_OVERHEAD_BYTES,
        jpeg_quality=settings.image_jpeg_quality,
    )


def make_deduplicator(settings: Settings, *, in_memory: bool = False) -> Deduplicator:
    """Redis when configured (shared by every ingest process), else an in-memory set (one process)."""
    if in_memory or settings.redis_url is None:
        return InMemoryDeduplicator()
    return RedisDeduplicator.from_url(
        settings.redis_url.get_secret_value(), ttl_s=settings.dedup_ttl_s, prefix=settings.redis_key_prefix
    )


def make_near_duplicates(settings: Settings, *, in_memory: bool = False) -> NearDuplicateIndex | None:
    """The perceptual-hash index (Redis when configured), or None when ``phash_dedup`` is off."""
    from carspot.ingest.phash import InMemoryPhashIndex, RedisPhashIndex

    if not settings.phash_dedup:
        return None
    if in_memory or settings.redis_url is None:
        return InMemoryPhashIndex(threshold=settings.phash_threshold)
    return RedisPhashIndex.from_url(
        settings.redis_url.get_secret_value(),
        threshold=settings.phash_threshold,
        prefix=settings.redis_key_prefix,
        ttl_s=settings.dedup_ttl_s,
    )


class Emitter(Protocol):
    """Where the ingest loop puts accepted posts and rejections (e.g. ``SinkEmitter``)."""

    def emit(self, ingested: IngestedPost) -> None: ...

    def reject(self, rejection: Rejection) -> None: ...


def ingest_posts(
    settings: Settings,
    posts: Iterable[RawPost | BrokenRecord],
    *,
    emitter: Emitter,
    should_stop: Callable[[], bool],
    max_posts: int | None = None,
    in_memory: bool = False,
    observer: IngestObserver | None = None,
) -> IngestStats:
    """The ingest loop with everything Settings decide: normalising, de-duplication (by id, sha256 and
    perceptual hash; in memory for the embedded default), dead-letter size. Every source goes through here;
    ``observer`` (e.g. the process's ``IngestMetrics``) is told of each item."""
    return run_ingest(
        posts,
        emit=emitter.emit,
        reject=emitter.reject,
        dedup=make_deduplicator(settings, in_memory=in_memory),
        normalize=make_normalizer(settings),
        near_duplicates=make_near_duplicates(settings, in_memory=in_memory),
        max_posts=max_posts,
        should_stop=should_stop,
        max_dlq_bytes=settings.dlq_max_original_bytes,
        observer=observer,
    )


def load_brand_classifier(settings: Settings) -> CurrentClassifier | None:
    """The registry's current brand model, swapped when a new one is promoted; None when there is none."""
    from carspot.classifier.registry import current_version
    from carspot.classifier.serving import load_classifier

    model_dir = settings.model_dir
    if current_version(model_dir) is None:
        log.warning("no brand model in %s: analyses will find cars but no brands", model_dir)
        return None
    return CurrentClassifier(
        load=lambda version: load_classifier(
            model_dir, version, threads=settings.classifier_threads, runtime=settings.classifier_runtime
        ),
        current_version=lambda: current_version(model_dir),
        check_interval_s=settings.model_check_interval_s,
    )


def load_car_detector(settings: Settings) -> CarDetector:
    """The detector mode's single-shot detector: Yolo-FastestV2 (shared folder) or CenterNet (npm, built)."""
    if settings.detector == "centernet":
        from carspot.detector.centernet import load_centernet

        return load_centernet(
            model_dir=settings.centernet_dir,
            car_classes=settings.detector_car_classes,
            score_threshold=settings.detector_score_threshold,
            threads=settings.classifier_threads,
            input_size=settings.centernet_input_size,
        )
    from carspot.detector.yolo_fastest import load_yolo_fastest

    return load_yolo_fastest(
        weights=settings.resolved_detector_weights,
        sha256=settings.detector_sha256,
        car_classes=settings.detector_car_classes,
        score_threshold=settings.detector_score_threshold,
    )


def single_threaded_loader(settings: Settings) -> Callable[[], Analysis]:
    """A picklable loader of the analysis with one OpenCV and one classifier thread, for worker processes that
    each take one core (`carspot.analysis.parallel`)."""
    return functools.partial(load_analysis, settings.model_copy(update={"classifier_threads": 1, "cv_threads": 1}))


def load_analysis(settings: Settings, *, classifier: ClassifierSource | None = None) -> Analysis:
    """Load the models once and compose the analysis modes they make possible.

    ``classifier`` replaces the registry's current brand model (to evaluate one given version)."""
    if settings.cv_threads:
        import cv2

        cv2.setNumThreads(settings.cv_threads)
    detector = load_car_detector(settings)
    if classifier is None:
        classifier = load_brand_classifier(settings)
    modes = {
        AnalysisMode.DETECTOR.value: detector_mode(
            detect=detector,
            detector_name=detector.name,
            classifier=classifier,
            whole_image=settings.detector_whole_image,
            whole_image_threshold=settings.whole_image_car_threshold,
            box_threshold=settings.detector_box_car_threshold,
            max_inside=settings.detector_max_inside,
            min_box_area=settings.detector_min_box_area,
        ),
    }
    if classifier is not None and hasattr(classifier(), "predict_regions"):  # both need the car check
        modes[AnalysisMode.STANDARD.value] = standard_mode(
            classifier=classifier, whole_image_threshold=settings.whole_image_car_threshold
        )
        from carspot.detector.proposals import ProposalFilters, load_proposer

        modes[AnalysisMode.REGION_SEARCH.value] = region_search_mode(
            propose=load_proposer(
                backend=settings.proposal_backend,
                max_side=settings.proposal_max_side,
                mode=settings.proposal_mode,
                filters=ProposalFilters(max_count=settings.proposal_max_count),
                num_threads=None,
            ),
            proposer_name=f"selective-search-{settings.proposal_backend}",
            classifier=classifier,  # type: ignore[arg-type]
            car_threshold=settings.region_car_threshold,
            max_regions=settings.region_max_regions,
            screen_count=settings.region_screen_count,
            screen_size=settings.region_screen_size,
            screen_threshold=settings.region_screen_threshold,
            whole_image=settings.region_whole_image,
            whole_image_threshold=settings.whole_image_car_threshold,
            max_inside=settings.region_max_inside,
        )
    if settings.mode.value not in modes:
        raise ConfigError(f"mode {settings.mode.value!r} is not available here; available: {sorted(modes)}")
    cap_blas_threads(settings.blas_threads)  # after the models are loaded: they may load another OpenBLAS
    return Analysis(modes=modes, default_mode=settings.mode.value, min_brand_confidence=settings.min_brand_confidence)


@dataclass(frozen=True)
class StoreAccess:
    """What the worker needs of the database: the idempotent batch write and the already-analysed check."""

    write_batch: BatchWriter
    known_images: KnownImages
    stored_posts: StoredPosts


def open_store(database_url: str, *, mode_for: Callable[[Post], str]) -> StoreAccess:
    """An engine on the (migrated) database and the callables the worker is given."""
    from sqlalchemy import select

    from carspot.store.engine import create_engine_for
    from carspot.store.queries import analysed_images
    from carspot.store.tables import Post as PostRow
    from carspot.store.writer import AnalysisStore

    engine = create_engine_for(database_url)
    store = AnalysisStore(engine)

    def stored_posts(post_ids: Sequence[str]) -> dict[str, str]:
        if not post_ids:
            return {}
        stmt = select(PostRow.post_id, PostRow.image_sha256).where(PostRow.post_id.in_(sorted(set(post_ids))))
        with engine.connect() as conn:
            return {str(post_id): str(sha) for post_id, sha in conn.execute(stmt)}

    def known_images(posts: Sequence[Post]) -> set[str]:
        wanted = {post.post_id: (post.image_sha256, mode_for(post)) for post in posts}
        found = analysed_images(engine, keys=set(wanted.values()))
        return {post_id for post_id, key in wanted.items() if key in found}

    return StoreAccess(
        write_batch=lambda posts, analyses: store.write_batch(posts=posts, analyses=analyses),
        known_images=known_images,
        stored_posts=stored_posts,
    )
