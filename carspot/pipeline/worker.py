"""The analysis worker: poll a batch → decode → analyse → write the batch in one transaction → commit offsets.

Offsets are committed only after the database commit, and every write is idempotent, so a crash at any point
replays at most one batch and changes nothing. A message that cannot be decoded, analysed or stored goes to the
dead-letter sink with a reason code and its original bytes, and the worker moves on. Batches are cut by time as
well as by count: the records not reached in time are re-read next poll (seek), so a slow batch never exceeds
Kafka's ``max.poll.interval.ms``. The decoded images of a batch are analysed together, ``analysis_batch_images``
at a time, so the brand classifier sees the regions of several images in one call (`Analysis.analyse_batch`);
the time cut is checked between those groups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from carspot.pipeline.db_errors import is_transient
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.message import DecodeError, InvalidPost, Post
from carspot.pipeline.ports import DeadLetterSink, Incoming, MessageSource
from carspot.store.records import AnalysisRecord, PostRecord
from carspot.store.writer import BatchConflictError

log = logging.getLogger("carspot.pipeline.worker")

BatchAnalyzer = Callable[[Sequence[tuple[Post, np.ndarray]]], Sequence[AnalysisRecord | Exception]]
"""Per (post, decoded image), in order: its analysis, or the exception that stopped it (dead-lettered with the
exception's ``reason`` attribute, else ``analysis_error``)."""
ImageDecoder = Callable[[bytes], np.ndarray]
BatchWriter = Callable[[Sequence[PostRecord], Sequence[AnalysisRecord]], object]
KnownImages = Callable[[Sequence[Post]], set[str]]
"""Given a batch's posts, the post ids whose picture already has an analysis in the mode they ask for."""


@dataclass
class WorkerStats:
    """What a worker did; the benchmark reads the per-stage seconds."""

    messages: int = 0
    analyses: int = 0
    links: int = 0
    already_analysed: int = 0  # replays, or pictures analysed before a model swap: linked, not re-analysed
    dead_letters: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    cars: int = 0
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # per stage


@dataclass
class _Batch:
    posts: list[PostRecord] = field(default_factory=list)
    analyses: list[AnalysisRecord] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    originals: dict[str, Incoming] = field(default_factory=dict)  # post id -> its message
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rewind: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Decoded:
    """A post whose image is decoded and waits for its group's analysis."""

    message: Incoming
    post: Post
    record: PostRecord
    image: np.ndarray


def post_record(post: Post) -> PostRecord:
    return PostRecord(
        post_id=post.post_id,
        source=post.source,
        author=post.author,
        text=post.text,
        url=post.url,
        posted_at=post.posted_at,
        ingested_at=post.ingested_at,
        image_sha256=post.image_sha256,
        width=post.width,
        height=post.height,
    )


def _letter(message: Incoming, *, reason: str, detail: str, post: Post | PostRecord | None = None) -> DeadLetter:
    return DeadLetter(
        stage="worker",
        reason=reason,
        detail=detail,
        original=message.value,
        original_size=len(message.value),
        post_id=post.post_id if post else (message.key.decode("utf-8", "replace") if message.key else None),
        source=post.source if post else None,
        origin_topic=message.topic,
        origin_partition=message.partition,
        origin_offset=message.offset,
    )


class Worker:
    """Consumes posts, analyses them and stores the results; ``run`` until ``stop`` or a bound."""

    def __init__(
        self,
        *,
        source: MessageSource,
        dead_letters: DeadLetterSink,
        analyze: BatchAnalyzer,
        decode_image: ImageDecoder,
        write_batch: BatchWriter,
        batch_max_messages: int = 32,
        analysis_batch_images: int = 8,
        batch_max_seconds: float = 5.0,
        poll_timeout_s: float = 1.0,
        write_attempts: int = 8,
        known_images: KnownImages | None = None,
    ) -> None:
        self._source = source
        self._dead_letters = dead_letters
        self._analyze = analyze
        self._decode_image = decode_image
        self._write_batch = write_batch
        self._batch_max_messages = batch_max_messages
        if analysis_batch_images < 1:
            raise ValueError("analysis_batch_images must be at least 1")
        self._analysis_batch_images = analysis_batch_images
        self._batch_max_seconds = batch_max_seconds
        self._poll_timeout_s = poll_timeout_s
        self._write_attempts = write_attempts
        self._known_images = known_images
        self._stopping = threading.Event()
        self.stats = WorkerStats()

    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit, and return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(
        self,
        *,
        max_messages: int | None = None,
        timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> WorkerStats:
        """Process batches until stopped, ``max_messages`` handled, ``timeout_s`` elapsed, nothing has
        arrived for ``idle_timeout_s`` (while ready), or ``until()`` is true.

        Always closes the source, which leaves the consumer group."""
        started = time.monotonic()
        last_message = started
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if timeout_s is not None and now - started >= timeout_s:
                    break
                if max_messages is not None and self.stats.messages >= max_messages:
                    break
                if idle_timeout_s is not None and now - last_message >= idle_timeout_s:
                    break
                if until is not None and until():
                    break
                limit = self._batch_max_messages
                if max_messages is not None:
                    limit = min(limit, max_messages - self.stats.messages)
                messages = self._source.poll(timeout_s=self._poll_timeout_s, max_records=limit)
                if messages or not self._source.ready:  # idle only counts once partitions are assigned
                    last_message = time.monotonic()
                    self.process_batch(messages)
        finally:
            self._source.close()
        return self.stats

    def process_batch(self, messages: Sequence[Incoming]) -> None:
        """Analyse, write and commit one polled batch (public so tests can drive it step by step)."""
        batch = self._analyse(messages)
        if batch.letters:
            for letter in batch.letters:
                self._dead_letters.send(letter)
            self._dead_letters.flush()
        self._write(batch)
        t0 = time.perf_counter()
        if batch.next_offsets:
            self._source.commit(batch.next_offsets)
        for (topic, partition), offset in batch.rewind.items():
            self._source.seek(topic=topic, partition=partition, offset=offset)
        self.stats.seconds["commit"] += time.perf_counter() - t0
        self.stats.batches += 1
        for reason, count in Counter(letter.reason for letter in batch.letters).items():
            self.stats.dead_letters[reason] += count

    def _analyse(self, messages: Sequence[Incoming]) -> _Batch:
        batch = _Batch()
        deadline = time.monotonic() + self._batch_max_seconds
        decoded: list[Post | DecodeError] = []
        for message in messages:
            try:
                decoded.append(Post.decode(message.value))
            except DecodeError as exc:
                decoded.append(exc)
        known = self._known([p for p in decoded if isinstance(p, Post) and not p.is_link])
        waiting: list[_Decoded] = []
        for index, (message, post) in enumerate(zip(messages, decoded, strict=True)):
            where = (message.topic, message.partition)
            if index > 0 and (time.monotonic() >= deadline or where in batch.rewind):
                batch.rewind.setdefault(where, message.offset)
                continue
            if isinstance(post, DecodeError):
                reason = "invalid_post" if isinstance(post, InvalidPost) else "decode_error"
                batch.letters.append(_letter(message, reason=reason, detail=str(post)))
            else:
                ready = self._accept(message, post, batch, known=post.post_id in known)
                if ready is not None:
                    waiting.append(ready)
            batch.next_offsets[where] = message.offset + 1
            self.stats.messages += 1
            if len(waiting) >= self._analysis_batch_images:
                self._analyse_group(waiting, batch)
                waiting = []
        self._analyse_group(waiting, batch)
        position = {id(message): i for i, message in enumerate(messages)}
        batch.posts.sort(key=lambda record: position[id(batch.originals[record.post_id])])  # message order
        return batch

    def _known(self, posts: Sequence[Post]) -> set[str]:
        if self._known_images is None or not posts:
            return set()
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.2, max=10.0),
            stop=stop_after_attempt(self._write_attempts),
            reraise=True,
        ):
            with attempt:
                return self._known_images(posts)
        raise AssertionError("unreachable: tenacity re-raises")

    def _accept(self, message: Incoming, post: Post, batch: _Batch, *, known: bool) -> _Decoded | None:
        """Links and already-analysed pictures go straight to the batch; a new picture is decoded to wait for
        its group's analysis (None: nothing to analyse, or dead-lettered)."""
        try:
            record = post_record(post)
        except ValueError as exc:  # e.g. text the database cannot hold
            batch.letters.append(_letter(message, reason="invalid_post", detail=str(exc), post=post))
            return None
        batch.originals[post.post_id] = message
        if post.is_link or known:
            batch.posts.append(record)
            self.stats.links += post.is_link
            self.stats.already_analysed += known
            return None
        t0 = time.perf_counter()
        try:
            image = self._decode_image(post.image or b"")
        except Exception as exc:
            batch.letters.append(_letter(message, reason="image_decode_error", detail=repr(exc), post=post))
            return None
        self.stats.seconds["decode"] += time.perf_counter() - t0
        return _Decoded(message=message, post=post, record=record, image=image)

    def _analyse_group(self, group: Sequence[_Decoded], batch: _Batch) -> None:
        if not group:
            return
        t0 = time.perf_counter()
        try:
            results = list(self._analyze([(item.post, item.image) for item in group]))
            if len(results) != len(group):
                raise RuntimeError(f"the analysis returned {len(results)} results for {len(group)} images")
        except Exception as exc:  # the analysis broke as a whole: every image of the group is dead-lettered
            results = [exc] * len(group)
        self.stats.seconds["analyse"] += time.perf_counter() - t0
        for item, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                log.error("analysis failed for post %s: %r", item.post.post_id, result, exc_info=result)
                reason = getattr(result, "reason", "analysis_error")
                batch.letters.append(_letter(item.message, reason=reason, detail=repr(result), post=item.post))
                continue
            batch.posts.append(item.record)
            batch.analyses.append(result)
            self.stats.analyses += 1
            self.stats.cars += len(result.regions)

    def _write(self, batch: _Batch) -> None:
        if not batch.posts and not batch.analyses:
            return
        t0 = time.perf_counter()
        try:
            self._write_with_retries(batch.posts, batch.analyses)
        except (DBAPIError, BatchConflictError) as exc:
            if is_transient(exc):
                raise
            log.warning("batch write rejected (%s); writing post by post", exc.__class__.__name__)
            self._write_one_by_one(batch)
        self.stats.seconds["write"] += time.perf_counter() - t0

    def _write_with_retries(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.2, max=10.0),
            stop=stop_after_attempt(self._write_attempts),
            reraise=True,
        ):
            with attempt:
                self._write_batch(posts, analyses)

    def _write_one_by_one(self, batch: _Batch) -> None:
        """Isolate the record the database refuses, dead-letter it, and keep the rest."""
        by_image = {a.image_sha256: a for a in batch.analyses}
        refused: list[DeadLetter] = []
        for post in batch.posts:
            analysis = by_image.pop(post.image_sha256, None)
            try:
                self._write_with_retries([post], [analysis] if analysis else [])
            except (DBAPIError, BatchConflictError) as exc:
                if is_transient(exc):
                    raise
                detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
                message = batch.originals[post.post_id]
                refused.append(_letter(message, reason="store_rejected", detail=detail, post=post))
        if refused:
            for letter in refused:
                self._dead_letters.send(letter)
            self._dead_letters.flush()
            self.stats.dead_letters["store_rejected"] += len(refused)
