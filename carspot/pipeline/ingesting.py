"""Turns what the ingest loop yields into wire messages: accepted posts into ``Post`` messages on the posts
sink, rejections into dead letters."""

from __future__ import annotations

from carspot.ingest.loop import IngestedPost, Rejection
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.message import Post
from carspot.pipeline.ports import DeadLetterSink, PostSink


def post_from(ingested: IngestedPost, *, mode: str | None = None) -> Post:
    return Post(
        post_id=ingested.post_id,
        source=ingested.source,
        author=ingested.author,
        text=ingested.text,
        url=ingested.url,
        posted_at=ingested.posted_at,
        ingested_at=ingested.ingested_at,
        image_sha256=ingested.image_sha256,
        width=ingested.width,
        height=ingested.height,
        image=ingested.image.jpeg if ingested.image is not None else None,
        mode=mode,
        campaign=ingested.campaign,
    )


def dead_letter_from(rejection: Rejection) -> DeadLetter:
    return DeadLetter(
        stage="ingest",
        reason=rejection.reason,
        detail=rejection.detail,
        original=rejection.original,
        original_size=rejection.original_size,
        truncated=rejection.truncated,
        post_id=rejection.post_id,
        source=rejection.source,
        image_ref=rejection.image_ref,
    )


class SinkEmitter:
    """The ingest loop's ``emit`` and ``reject`` callables, bound to a posts sink and a dead-letter sink."""

    def __init__(self, *, posts: PostSink, dead_letters: DeadLetterSink, mode: str | None = None) -> None:
        self._posts = posts
        self._dead_letters = dead_letters
        self._mode = mode

    def emit(self, ingested: IngestedPost) -> None:
        self._posts.send_post(key=ingested.post_id, value=post_from(ingested, mode=self._mode).encode())

    def reject(self, rejection: Rejection) -> None:
        self._dead_letters.send(dead_letter_from(rejection))

    def flush(self) -> None:
        self._posts.flush()
        self._dead_letters.flush()
