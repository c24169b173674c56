"""The analysis worker: poll a batch → decode → analyse → write the batch in one transaction → commit offsets.

Offsets are committed only after the database commit, and every write is idempotent, so a crash at any point
replays at most one batch and changes nothing. A message that cannot be decoded, analysed or stored goes to the
dead-letter sink with a reason code and its original bytes (capped), and the worker moves on; the letters go out
after the database commit, with the offsets (in one Kafka transaction when an ``outcome`` is given, so a replay
never sends one twice). A commit that fails re-reads the batch. Batches are cut by time as
well as by count: the records not reached in time are re-read next poll (seek), so a slow batch never exceeds
Kafka's ``max.poll.interval.ms``. The decoded images of a batch are analysed together, ``analysis_batch_images``
at a time, so the brand classifier sees the regions of several images in one call (`Analysis.analyse_batch`);
the time cut is checked between those groups. Each analysed image gets a small thumbnail made from the decoded
array (``make_thumbnail``), carried by its analysis record so it is written in the same transaction; a
thumbnail that cannot be made is logged and the analysis stored without it (a picture is never lost for it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_never,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from carspot.pipeline.db_errors import is_transient
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.message import DecodeError, InvalidPost, Post
from carspot.pipeline.metrics import WorkerMetrics
from carspot.pipeline.ports import BatchOutcome, CommitFailed, DeadLetterSink, Incoming, MessageSource
from carspot.pipeline.thumbnails import make_thumbnail
from carspot.store.records import AnalysisRecord, MentionRecord, PostRecord, ThumbnailRecord
from carspot.store.writer import BatchConflictError

log = logging.getLogger("carspot.pipeline.worker")

BatchAnalyzer = Callable[[Sequence[tuple[Post, np.ndarray]]], Sequence[AnalysisRecord | Exception]]
"""Per (post, decoded image), in order: its analysis, or the exception that stopped it (dead-lettered with the
exception's ``reason`` attribute, else ``analysis_error``)."""
ImageDecoder = Callable[[bytes], np.ndarray]
ThumbnailMaker = Callable[[np.ndarray], ThumbnailRecord]
"""The decoded image (the array the analysis saw) → its thumbnail."""
BatchWriter = Callable[[Sequence[PostRecord], Sequence[AnalysisRecord]], object]
KnownImages = Callable[[Sequence[Post]], set[str]]
"""Given a batch's posts, the post ids whose picture already has an analysis in the mode they ask for."""
MentionFinder = Callable[[str | None], tuple[MentionRecord, ...]]
"""The makes a post's text names (``carspot.pipeline.mentioning.mention_finder``)."""
StoredPosts = Callable[[Sequence[str]], dict[str, str]]
"""Given post ids, those already stored, with the sha256 of their picture."""
PartitionLag = Callable[[], Mapping[int, int]]
"""Per partition the worker owns now, the messages behind its end (read without a network call)."""
POST_ID_CONFLICT = "post_id_conflict"
"""A post id already stored (or earlier in the batch) with another picture: the first one wins, this one is
dead-lettered (de-duplication at ingest misses it when Redis is down)."""


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
    thumbnails: int = 0
    thumbnail_errors: int = 0
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # per stage
    """Per stage: poll (the polls that returned messages), lookup (the already-stored checks), decode, analyse,
    write, commit; and gc, the time Python's cyclic garbage collector ran in the loop (inside the other stages)."""


@contextlib.contextmanager
def _gc_timed(seconds: defaultdict[str, float]) -> Iterator[None]:
    """Add the time of each garbage collection to ``seconds["gc"]`` while the block runs."""
    started: list[float] = []

    def callback(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            seconds["gc"] += time.perf_counter() - started.pop()

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


@dataclass
class _Batch:
    posts: list[PostRecord] = field(default_factory=list)
    analyses: list[AnalysisRecord] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    originals: dict[str, Incoming] = field(default_factory=dict)  # post id -> its message
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rewind: dict[tuple[str, int], int] = field(default_factory=dict)
    handled: int = 0  # messages of the batch dealt with (the rest, cut by time, are re-read)
    links: int = 0
    already_analysed: int = 0
    written: list[PostRecord] = field(default_factory=list)  # posts the database took
    analyses_written: int = 0


@dataclass(frozen=True)
class _Decoded:
    """A post whose image is decoded and waits for its group's analysis."""

    message: Incoming
    post: Post
    record: PostRecord
    image: np.ndarray


class _StopWhenSet(stop_base):
    """Stop retrying once the event is set (the worker was asked to stop)."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._event.is_set()


def _first_offsets(messages: Sequence[Incoming]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset of the batch's first message there: where to re-read it from."""
    first: dict[tuple[str, int], int] = {}
    for message in messages:
        where = (message.topic, message.partition)
        first[where] = min(first.get(where, message.offset), message.offset)
    return first


def post_record(post: Post, *, mentions: tuple[MentionRecord, ...] = ()) -> PostRecord:
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
        campaign=post.campaign,
        mentions=mentions,
    )


def _letter(
    message: Incoming, *, reason: str, detail: str, max_bytes: int, post: Post | PostRecord | None = None
) -> DeadLetter:
    return DeadLetter(
        stage="worker",
        reason=reason,
        detail=detail,
        original=message.value[:max_bytes],
        original_size=len(message.value),
        truncated=len(message.value) > max_bytes,
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
        dead_letters: DeadLetterSink | None = None,
        analyze: BatchAnalyzer,
        decode_image: ImageDecoder,
        write_batch: BatchWriter,
        batch_max_messages: int = 64,
        analysis_batch_images: int = 8,
        batch_max_seconds: float = 5.0,
        poll_timeout_s: float = 1.0,
        write_attempts: int | None = None,
        backoff_max_s: float = 30.0,
        known_images: KnownImages | None = None,
        outcome: BatchOutcome | None = None,
        stored_posts: StoredPosts | None = None,
        max_original_bytes: int = 1 << 20,
        make_thumbnail: ThumbnailMaker | None = make_thumbnail,
        find_mentions: MentionFinder | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: WorkerMetrics | None = None,
        partition_lag: PartitionLag | None = None,
    ) -> None:
        """``outcome``, when given, publishes each batch's dead letters and commits its offsets in one atomic
        step (Kafka: a transaction), else the letters go to ``dead_letters`` just before ``source.commit``.
        A dead letter keeps at most ``max_original_bytes`` of its message. ``clock`` (seconds) bounds the run
        and cuts batches; tests pass their own. A database that is down is waited out, with a warning per attempt
        and a wait doubling up to ``backoff_max_s``, until it is back or the worker is stopped (``write_attempts``
        bounds the attempts instead). ``metrics`` receives what the worker does (a private registry when not
        given); ``partition_lag``, when given, is read after each poll for the per-partition lag gauge.
        ``make_thumbnail`` (None: keep none) makes each analysed image's thumbnail.
        ``find_mentions`` gives the makes each post's text names, stored with it."""
        self._source = source
        self._make_thumbnail = make_thumbnail
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
        self._backoff_max_s = backoff_max_s
        self._known_images = known_images
        if (dead_letters is None) == (outcome is None):
            raise ValueError("give either dead_letters or outcome")
        self._outcome = outcome
        self._stored_posts = stored_posts
        self._max_original_bytes = max_original_bytes
        self._find_mentions = find_mentions
        self._clock = clock
        self._stopping = threading.Event()
        self.stats = WorkerStats()
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._partition_lag = partition_lag

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
        arrived for ``idle_timeout_s`` (while ready: the time a batch takes to process does not count), or
        ``until()`` is true.

        Always closes the source, which leaves the consumer group."""
        started = self._clock()
        last_message = started
        try:
            with _gc_timed(self.stats.seconds):
                while not self._stopping.is_set():
                    now = self._clock()
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
                    t0 = time.perf_counter()
                    messages = self._source.poll(timeout_s=self._poll_timeout_s, max_records=limit)
                    if messages:  # an empty poll is waiting for work (or a rebalance), not a cost of the work
                        self.stats.seconds["poll"] += time.perf_counter() - t0
                    if self._partition_lag is not None:
                        self.metrics.lag(self._partition_lag())
                    if messages or not self._source.ready:  # idle only counts once partitions are assigned
                        self.process_batch(messages)
                        last_message = self._clock()  # idle is nothing to read: it starts once the batch is done
        finally:
            self._source.close()
        return self.stats

    def process_batch(self, messages: Sequence[Incoming]) -> None:
        """Analyse, write and commit one polled batch (public so tests can drive it step by step)."""
        try:
            batch = self._analyse(messages)
            self._write(batch)
        except DBAPIError as exc:
            if not (self._stopping.is_set() and is_transient(exc)):
                raise
            log.warning("stopped while the database is down: the batch is left uncommitted, to be re-read")
            return
        t0 = time.perf_counter()
        try:
            self._commit(batch)
        except CommitFailed as exc:  # nothing of the batch counts as done: read it again (writes are idempotent)
            log.warning("batch not committed, reading it again: %s", exc)
            for (topic, partition), offset in _first_offsets(messages).items():
                self._source.seek(topic=topic, partition=partition, offset=offset)
            self._commit_took(time.perf_counter() - t0)
            return
        for (topic, partition), offset in batch.rewind.items():
            self._source.seek(topic=topic, partition=partition, offset=offset)
        self._commit_took(time.perf_counter() - t0)
        self.stats.batches += 1
        for reason, count in Counter(letter.reason for letter in batch.letters).items():
            self.stats.dead_letters[reason] += count
        self._report(batch)

    def _commit_took(self, seconds: float) -> None:
        self.stats.seconds["commit"] += seconds
        self.metrics.stage("commit", seconds)

    def _report(self, batch: _Batch) -> None:
        """A committed batch, as metrics: counted once it is done, so a re-read batch is not counted twice."""
        m = self.metrics
        m.read(batch.handled)
        m.batch(batch.handled)
        m.analysed(batch.analyses_written)
        m.linked(batch.links, kind="repost")
        m.linked(batch.already_analysed, kind="already_analysed")
        m.dead_lettered(letter.reason for letter in batch.letters)

    def _commit(self, batch: _Batch) -> None:
        """The batch's dead letters out and its offsets committed, after its results are stored."""
        if self._outcome is not None:
            if batch.next_offsets or batch.letters:
                self._outcome.commit(offsets=batch.next_offsets, dead_letters=batch.letters)
            return
        assert self._dead_letters is not None  # one of the two, checked in __init__
        if batch.letters:
            for letter in batch.letters:
                self._dead_letters.send(letter)
            self._dead_letters.flush()
        if batch.next_offsets:
            self._source.commit(batch.next_offsets)

    def _letter(
        self, message: Incoming, *, reason: str, detail: str, post: Post | PostRecord | None = None
    ) -> DeadLetter:
        return _letter(message, reason=reason, detail=detail, post=post, max_bytes=self._max_original_bytes)

    def _analyse(self, messages: Sequence[Incoming]) -> _Batch:
        batch = _Batch()
        deadline = self._clock() + self._batch_max_seconds
        decoded: list[Post | DecodeError] = []
        for message in messages:
            try:
                decoded.append(Post.decode(message.value))
            except DecodeError as exc:
                decoded.append(exc)
        t0 = time.perf_counter()
        known = self._known([p for p in decoded if isinstance(p, Post) and not p.is_link])
        pictures = self._stored([p.post_id for p in decoded if isinstance(p, Post)])  # post id -> its sha256
        self.stats.seconds["lookup"] += time.perf_counter() - t0
        waiting: list[_Decoded] = []
        for index, (message, post) in enumerate(zip(messages, decoded, strict=True)):
            where = (message.topic, message.partition)
            if index > 0 and (self._clock() >= deadline or where in batch.rewind):
                batch.rewind.setdefault(where, message.offset)
                continue
            if isinstance(post, DecodeError):
                reason = "invalid_post" if isinstance(post, InvalidPost) else "decode_error"
                batch.letters.append(self._letter(message, reason=reason, detail=str(post)))
            elif pictures.setdefault(post.post_id, post.image_sha256) != post.image_sha256:
                first = pictures[post.post_id]
                detail = f"post id already taken by picture {first[:12]}, not {post.image_sha256[:12]}"
                batch.letters.append(self._letter(message, reason=POST_ID_CONFLICT, detail=detail, post=post))
            else:
                ready = self._accept(message, post, batch, known=post.post_id in known)
                if ready is not None:
                    waiting.append(ready)
            batch.next_offsets[where] = message.offset + 1
            self.stats.messages += 1
            batch.handled += 1
            if len(waiting) >= self._analysis_batch_images:
                self._analyse_group(waiting, batch)
                waiting = []
        self._analyse_group(waiting, batch)
        position = {id(message): i for i, message in enumerate(messages)}
        batch.posts.sort(key=lambda record: position[id(batch.originals[record.post_id])])  # message order
        return batch

    def _retrying(self, what: str) -> Retrying:
        """The one retry policy of database calls: transient errors only, capped backoff with jitter, a warning
        per attempt, for ever (or ``write_attempts``) unless the worker is asked to stop; the wait ends early
        when it is."""
        bound = stop_never if self._write_attempts is None else stop_after_attempt(self._write_attempts)

        def warn(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning("%s failed (attempt %d): %r; retrying in %.1f s", what, state.attempt_number, error, wait)

        return Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.5, max=self._backoff_max_s),
            stop=stop_any(bound, _StopWhenSet(self._stopping)),
            sleep=self._pause,
            before_sleep=warn,
            reraise=True,
        )

    def _pause(self, seconds: float) -> None:
        """Wait between attempts, ending early when the worker is asked to stop."""
        self._stopping.wait(seconds)

    def _known(self, posts: Sequence[Post]) -> set[str]:
        if self._known_images is None or not posts:
            return set()
        for attempt in self._retrying("reading the analysed pictures"):
            with attempt:
                return self._known_images(posts)
        raise AssertionError("unreachable: tenacity re-raises")

    def _stored(self, post_ids: Sequence[str]) -> dict[str, str]:
        if self._stored_posts is None or not post_ids:
            return {}
        for attempt in self._retrying("reading the stored posts"):
            with attempt:
                return dict(self._stored_posts(post_ids))
        raise AssertionError("unreachable: tenacity re-raises")

    def _accept(self, message: Incoming, post: Post, batch: _Batch, *, known: bool) -> _Decoded | None:
        """Links and already-analysed pictures go straight to the batch; a new picture is decoded to wait for
        its group's analysis (None: nothing to analyse, or dead-lettered)."""
        try:
            mentions = self._find_mentions(post.text) if self._find_mentions is not None else ()
            record = post_record(post, mentions=mentions)
        except ValueError as exc:  # e.g. text the database cannot hold
            batch.letters.append(self._letter(message, reason="invalid_post", detail=str(exc), post=post))
            return None
        batch.originals[post.post_id] = message
        if post.is_link or known:
            batch.posts.append(record)
            self.stats.links += post.is_link
            self.stats.already_analysed += known
            batch.links += post.is_link
            batch.already_analysed += known
            return None
        t0 = time.perf_counter()
        try:
            image = self._decode_image(post.image or b"")
        except Exception as exc:
            batch.letters.append(self._letter(message, reason="image_decode_error", detail=repr(exc), post=post))
            return None
        seconds = time.perf_counter() - t0
        self.stats.seconds["decode"] += seconds
        self.metrics.stage("decode", seconds)
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
        seconds = time.perf_counter() - t0
        self.stats.seconds["analyse"] += seconds
        self.metrics.stage("analyse", seconds)
        latest: AnalysisRecord | None = None
        for item, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                log.error("analysis failed for post %s: %r", item.post.post_id, result, exc_info=result)
                reason = getattr(result, "reason", "analysis_error")
                batch.letters.append(self._letter(item.message, reason=reason, detail=repr(result), post=item.post))
                continue
            batch.posts.append(item.record)
            batch.analyses.append(self._with_thumbnail(result, item))
            self.stats.analyses += 1
            self.stats.cars += len(result.regions)
            latest = result
        if latest is not None:
            self.metrics.model(version=latest.model_version, mode=latest.mode, detector=latest.detector)

    def _with_thumbnail(self, result: AnalysisRecord, item: _Decoded) -> AnalysisRecord:
        """The analysis with its image's thumbnail; without one (logged) when it cannot be made."""
        if self._make_thumbnail is None or result.thumbnail is not None:
            return result
        t0 = time.perf_counter()
        try:
            thumbnail = self._make_thumbnail(item.image)
            with_thumbnail = dataclasses.replace(result, thumbnail=thumbnail)
        except Exception as exc:
            self.stats.thumbnail_errors += 1
            log.warning("no thumbnail for post %s: %r", item.post.post_id, exc)
            return result
        finally:
            self.stats.seconds["thumbnail"] += time.perf_counter() - t0
        self.stats.thumbnails += 1
        return with_thumbnail

    def _write(self, batch: _Batch) -> None:
        if not batch.posts and not batch.analyses:
            return
        t0 = time.perf_counter()
        try:
            self._write_with_retries(batch.posts, batch.analyses)
            batch.written = list(batch.posts)
            batch.analyses_written = len(batch.analyses)
        except (DBAPIError, BatchConflictError) as exc:
            if is_transient(exc):
                raise
            log.warning("batch write rejected (%s); writing post by post", exc.__class__.__name__)
            self._write_one_by_one(batch)
        seconds = time.perf_counter() - t0
        self.stats.seconds["write"] += seconds
        self.metrics.stage("write", seconds)
        self.metrics.stored(post.ingested_at for post in batch.written)

    def _write_with_retries(self, posts: Sequence[PostRecord], analyses: Sequence[AnalysisRecord]) -> None:
        for attempt in self._retrying(f"writing {len(posts)} post(s)"):
            with attempt:
                self._write_batch(posts, analyses)

    def _write_one_by_one(self, batch: _Batch) -> None:
        """Isolate the record the database refuses, dead-letter it, and keep the rest."""
        by_image = {a.image_sha256: a for a in batch.analyses}
        for post in batch.posts:
            analysis = by_image.pop(post.image_sha256, None)
            try:
                self._write_with_retries([post], [analysis] if analysis else [])
                batch.written.append(post)
                batch.analyses_written += analysis is not None
            except (DBAPIError, BatchConflictError) as exc:
                if is_transient(exc):
                    raise
                detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
                message = batch.originals[post.post_id]
                batch.letters.append(self._letter(message, reason="store_rejected", detail=detail, post=post))
