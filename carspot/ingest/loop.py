"""The producer loop: posts in, normalised posts or rejections out, whatever the sink is (Kafka, a queue).

Per post, in this order (cheap and shared checks first, nothing read twice)::

    claim_post ──already claimed──▶ skipped (duplicate_posts)
        │
    read_image ─┬─ IngestError / OSError ─▶ reject(reason)     the post claim is KEPT: a rejection is final,
    normalize  ─┘─ any other exception ───▶ reject("internal_error")   so replaying a source does not
        │                                                              dead-letter the same post twice
    claim_image ──already claimed──▶ emit without bytes (a link to the picture's existing analysis)
        │
    near_duplicates (optional) ──a picture within the pHash threshold──▶ emit without bytes, linked to
        │                        that picture's sha256 (this picture's own sha256 claim is released, so
        │                        an exact copy of it later is matched the same way, never linked to itself)
      emit

Nothing is lost silently: if ``emit`` or ``reject`` raises (the sink is down) or the loop is interrupted
mid-post, the claims this post took are released and the exception propagates, so the caller decides
(retry, exit) and a later run sends the post again. A sink that waits out an outage raises
:class:`EmitInterrupted` when asked to stop meanwhile: the claims are released the same way and the run ends
as ``should_stop``. A claim is therefore kept only for a post the sink took (Kafka: acknowledged). A bug in
normalisation costs one post, not the run.

A ``BrokenRecord`` is rejected as ``"broken_record"``, claimed like a post so a replay does not dead-letter it
again: under its ``post_id`` when it has one, else under ``"broken:" + sha256(source, ref, raw line)``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from carspot.ingest.dedup import Deduplicator
from carspot.ingest.errors import ImageTooLarge, IngestError
from carspot.ingest.images import NormalizedImage
from carspot.ingest.phash import NearDuplicateIndex, phash_bytes
from carspot.ingest.sources import BrokenRecord, RawPost

logger = logging.getLogger("carspot.ingest.loop")

BROKEN_RECORD = "broken_record"
INTERNAL_ERROR = "internal_error"
UNREADABLE = "unreadable"


class EmitInterrupted(Exception):
    """Raised by ``emit`` or ``reject`` that gave up waiting for its sink because the run was asked to stop."""


class IngestObserver(Protocol):
    """Told of each item as it is handled (``carspot.pipeline.metrics.IngestMetrics`` exports them): counters
    that outlive one run's :class:`IngestStats`, e.g. over an HTTP push endpoint's lifetime."""

    def seen(self) -> None: ...

    def emitted(self, *, kind: Literal["picture", "repost", "near_duplicate"]) -> None: ...

    def rejected(self, *, reason: str) -> None: ...

    def duplicate(self, *, kind: Literal["post_id", "broken_record"]) -> None: ...


class _Unobserved:
    def seen(self) -> None:
        pass

    def emitted(self, *, kind: Literal["picture", "repost", "near_duplicate"]) -> None:
        pass

    def rejected(self, *, reason: str) -> None:
        pass

    def duplicate(self, *, kind: Literal["post_id", "broken_record"]) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestedPost:
    """What the sink receives. ``image`` is None when the same normalised picture was already emitted:
    the post still goes out (nothing is lost) and links to that picture's analysis by ``image_sha256``."""

    post_id: str
    source: str
    author: str | None
    text: str | None
    url: str | None
    posted_at: datetime | None
    ingested_at: datetime
    image: NormalizedImage | None = field(repr=False)
    image_sha256: str
    width: int
    height: int
    duplicate_of_image: bool
    image_ref: str = ""
    campaign: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """One refused input for the dead-letter sink; ``original`` is at most ``max_dlq_bytes`` of it."""

    post_id: str | None
    source: str
    image_ref: str
    reason: str
    detail: str
    original: bytes = field(repr=False)
    original_size: int | None
    truncated: bool


@dataclass
class IngestStats:
    """Counts of one run; posts sent = ``emitted`` (with picture bytes) + ``emitted_links`` (without)."""

    seen: int = 0  # items taken from the source, broken records included
    emitted: int = 0
    emitted_links: int = 0
    near_duplicates: int = 0  # of the links: a re-encoded/resized copy found by perceptual hash
    duplicate_posts: int = 0  # post id already claimed: skipped
    duplicate_broken: int = 0  # a broken record without post id, already dead-lettered by an earlier run
    rejected: Counter[str] = field(default_factory=Counter)
    dedup_degraded: bool = False  # at any time during the run
    seconds: float = 0.0
    stop_reason: str = ""  # "exhausted" | "max_posts" | "should_stop" | "error"

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def run_ingest(
    posts: Iterable[RawPost | BrokenRecord],
    *,
    emit: Callable[[IngestedPost], None],
    reject: Callable[[Rejection], None],
    dedup: Deduplicator,
    normalize: Callable[[bytes], NormalizedImage],
    max_posts: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_dlq_bytes: int = 1 << 20,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    monotonic: Callable[[], float] = time.monotonic,
    progress_interval_s: float = 60.0,
    near_duplicates: NearDuplicateIndex | None = None,
    observer: IngestObserver | None = None,
) -> IngestStats:
    """Ingest ``posts`` until exhausted, ``max_posts`` items were taken, or ``should_stop()`` says so.

    ``observer`` is told of every item handled, as it is (an item whose sink was interrupted is not).

    ``max_posts`` counts every item taken from ``posts`` (broken records and duplicates too), and both
    bounds are checked before the next item is taken, so a live source is never read one item too far.
    Exceptions from ``posts`` itself, ``emit`` and ``reject`` propagate (after releasing the post's claims).
    """
    if max_posts is not None and max_posts < 0:
        raise ValueError("max_posts must be >= 0")
    if max_dlq_bytes < 0:
        raise ValueError("max_dlq_bytes must be >= 0")
    ingest = _Ingest(
        emit=emit,
        reject=reject,
        dedup=dedup,
        normalize=normalize,
        max_dlq_bytes=max_dlq_bytes,
        clock=clock,
        near_duplicates=near_duplicates,
        observer=observer or _Unobserved(),
    )
    stats = ingest.stats
    started = last_progress = monotonic()
    iterator = iter(posts)
    stats.stop_reason = "error"
    try:
        while True:
            if max_posts is not None and stats.seen >= max_posts:
                stats.stop_reason = "max_posts"
                break
            if should_stop():
                stats.stop_reason = "should_stop"
                break
            try:
                item = next(iterator)
            except StopIteration:
                stats.stop_reason = "exhausted"
                break
            stats.seen += 1
            try:
                if isinstance(item, BrokenRecord):
                    ingest.broken(item)
                else:
                    ingest.post(item)
            except EmitInterrupted as exc:  # its claims are released: a later run sends it
                logger.info("stopped while waiting for the sink: %s", exc)
                stats.seen -= 1
                stats.stop_reason = "should_stop"
                break
            ingest.observer.seen()
            stats.dedup_degraded = stats.dedup_degraded or dedup.degraded
            now = monotonic()
            if now - last_progress >= progress_interval_s:
                last_progress = now
                logger.info("ingest progress: %s", _summary(stats))
    finally:
        stats.seconds = monotonic() - started
        stats.dedup_degraded = stats.dedup_degraded or dedup.degraded
        logger.info("ingest stopped (%s) after %.1f s: %s", stats.stop_reason, stats.seconds, _summary(stats))
    return stats


class _Ingest:
    """The per-item steps of :func:`run_ingest`, sharing its sinks, settings and counters."""

    def __init__(
        self,
        *,
        emit: Callable[[IngestedPost], None],
        reject: Callable[[Rejection], None],
        dedup: Deduplicator,
        normalize: Callable[[bytes], NormalizedImage],
        max_dlq_bytes: int,
        clock: Callable[[], datetime],
        near_duplicates: NearDuplicateIndex | None = None,
        observer: IngestObserver,
    ) -> None:
        self.near_duplicates = near_duplicates
        self.observer = observer
        self.emit = emit
        self.reject = reject
        self.dedup = dedup
        self.normalize = normalize
        self.max_dlq_bytes = max_dlq_bytes
        self.clock = clock
        self.stats = IngestStats()

    def broken(self, record: BrokenRecord) -> None:
        key = record.post_id or _broken_key(record)
        if not self.dedup.claim_post(key):
            if record.post_id:
                self.stats.duplicate_posts += 1
                self.observer.duplicate(kind="post_id")
            else:
                self.stats.duplicate_broken += 1
                self.observer.duplicate(kind="broken_record")
            return
        try:
            self._reject(
                post_id=record.post_id,
                source=record.source,
                image_ref=record.ref or f"line {record.line_no}",
                reason=BROKEN_RECORD,
                detail=f"line {record.line_no}: {record.reason}",
                original=record.raw,
                original_size=len(record.raw),
            )
        except BaseException:
            self.dedup.release(post_id=key)
            raise

    def post(self, post: RawPost) -> None:
        if not self.dedup.claim_post(post.post_id):
            self.stats.duplicate_posts += 1
            self.observer.duplicate(kind="post_id")
            logger.debug("skipping post %s: already ingested", post.post_id)
            return
        image_claimed: str | None = None
        indexed: int | None = None  # the pHash this post added to the near-duplicate index
        finished = False
        try:
            data: bytes | None = None
            try:
                data = post.read_image()
                image = self.normalize(data)
            except Exception as exc:
                self._reject_post(post, exc, data)
                finished = True
                return
            first = self.dedup.claim_image(image.sha256)
            image_claimed = image.sha256 if first else None
            linked_sha256 = image.sha256
            near = False
            if first and self.near_duplicates is not None:
                phash = _phash(image)
                match = None if phash is None else self.near_duplicates.find_or_add(phash, image.sha256)
                if match is not None and match != image.sha256:
                    self.dedup.release(sha256=image.sha256)
                    image_claimed = None
                    first, near, linked_sha256 = False, True, match
                elif match is None:
                    indexed = phash
            self.emit(
                IngestedPost(
                    post_id=post.post_id,
                    source=post.source,
                    author=post.author,
                    text=post.text,
                    url=post.url,
                    posted_at=post.posted_at,
                    ingested_at=self.clock(),
                    image=image if first else None,
                    image_sha256=linked_sha256,
                    width=image.width,
                    height=image.height,
                    duplicate_of_image=not first,
                    image_ref=post.image_ref,
                    campaign=post.campaign,
                )
            )
            finished = True
        finally:
            if not finished:  # the sink failed or we were interrupted: let a later run send it again
                self.dedup.release(post_id=post.post_id, sha256=image_claimed)
                if indexed is not None and self.near_duplicates is not None:
                    self.near_duplicates.remove(indexed, image.sha256)
        if first:
            self.stats.emitted += 1
            self.observer.emitted(kind="picture")
        else:
            self.stats.emitted_links += 1
            self.stats.near_duplicates += near
            self.observer.emitted(kind="near_duplicate" if near else "repost")
            logger.debug("post %s links to already sent picture %s", post.post_id, image.sha256[:12])

    def _reject_post(self, post: RawPost, exc: Exception, data: bytes | None) -> None:
        reason, detail = _classify(exc)
        if reason == INTERNAL_ERROR:
            logger.error("bug while ingesting post %s (%s)", post.post_id, post.image_ref, exc_info=exc)
        if data is None and isinstance(exc, ImageTooLarge):  # refused unread: keep its head for the DLQ
            original, size = self._head(post), exc.size
        else:
            original, size = data or b"", None if data is None else len(data)
        self._reject(
            post_id=post.post_id,
            source=post.source,
            image_ref=post.image_ref,
            reason=reason,
            detail=detail,
            original=original,
            original_size=size,
        )

    def _head(self, post: RawPost) -> bytes:
        if post.read_head is None or self.max_dlq_bytes == 0:
            return b""
        try:
            return post.read_head(self.max_dlq_bytes)
        except (IngestError, OSError) as exc:
            logger.debug("cannot read the head of %s for its dead letter: %s", post.image_ref, exc)
            return b""

    def _reject(
        self,
        *,
        post_id: str | None,
        source: str,
        image_ref: str,
        reason: str,
        detail: str,
        original: bytes,
        original_size: int | None,
    ) -> None:
        kept = original[: self.max_dlq_bytes]
        self.reject(
            Rejection(
                post_id=post_id,
                source=source,
                image_ref=image_ref,
                reason=reason,
                detail=detail,
                original=kept,
                original_size=original_size,
                truncated=len(kept) < max(len(original), original_size or 0),
            )
        )
        self.stats.rejected[reason] += 1
        self.observer.rejected(reason=reason)
        logger.info("rejected %s (%s): %s: %s", post_id or "-", image_ref, reason, detail)


def _classify(exc: Exception) -> tuple[str, str]:
    """The one error policy point: our refusals keep their reason, I/O errors of a source are "unreadable",
    anything else is a bug of ours, dead-lettered as "internal_error" so it is visible but not fatal."""
    if isinstance(exc, IngestError):
        return exc.reason, str(exc)
    if isinstance(exc, OSError):
        return UNREADABLE, f"{type(exc).__name__}: {exc}"
    return INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"


def _phash(image: NormalizedImage) -> int | None:
    try:
        return phash_bytes(image.jpeg)
    except Exception as exc:  # our own JPEG: a failure here is a bug, but must not cost the post
        logger.error("cannot hash picture %s: %s: %s", image.sha256[:12], type(exc).__name__, exc)
        return None


def _broken_key(record: BrokenRecord) -> str:
    digest = hashlib.sha256(f"{record.source}\n{record.ref}\n".encode() + record.raw)
    return "broken:" + digest.hexdigest()


def _summary(stats: IngestStats) -> str:
    rejected = ", ".join(f"{reason}={count}" for reason, count in sorted(stats.rejected.items())) or "none"
    degraded = " [dedup degraded]" if stats.dedup_degraded else ""
    return (
        f"seen={stats.seen} emitted={stats.emitted} links={stats.emitted_links} near={stats.near_duplicates} "
        f"duplicate_posts={stats.duplicate_posts} duplicate_broken={stats.duplicate_broken} "
        f"rejected: {rejected}{degraded}"
    )


__all__ = ["EmitInterrupted", "IngestObserver", "IngestStats", "IngestedPost", "Rejection", "run_ingest"]
