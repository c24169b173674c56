"""The dead-letter tools without Kafka: ids, filters, what ``show`` prints, and what a replay sends or skips.

The replay's run on the real Kafka and PostgreSQL is in tests/integration/test_dlq_replay.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.dlq import (
    REPLAY_OF_HEADER,
    REPLAY_REASON_HEADER,
    UNDECODABLE,
    LetterFilter,
    LetterIdError,
    StoredLetter,
    by_reason,
    describe,
    parse_letter_id,
    plan_replay,
    replay,
    replay_report,
    stored_letter,
    summary_row,
)
from carspot.pipeline.message import Post

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PICTURE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40  # JPEG-looking bytes, 10 KiB


def post(post_id: str, picture: bytes = PICTURE) -> Post:
    return Post(
        post_id=post_id,
        source="x",
        ingested_at=T0,
        image_sha256=hashlib.sha256(picture).hexdigest(),
        width=64,
        height=48,
        image=picture,
        author="@someone",
        text="look at this car",
    )


def worker_letter(
    p: Post, *, reason: str = "analysis_error", offset: int = 0, at: datetime = T0, cap: int = 1 << 20
) -> StoredLetter:
    """A dead letter as the worker writes it (its original is the post message, capped), as read back."""
    message = p.encode()
    letter = DeadLetter(
        stage="worker",
        reason=reason,
        detail="RuntimeError('model file missing')",
        original=message[:cap],
        original_size=len(message),
        truncated=len(message) > cap,
        post_id=p.post_id,
        source=p.source,
        origin_topic="carspot.posts",
        origin_partition=3,
        origin_offset=17,
    )
    return stored_letter(partition=0, offset=offset, timestamp=at, value=letter.encode(), headers=[("h", b"v")])


def ingest_letter(offset: int) -> StoredLetter:
    letter = DeadLetter(
        stage="ingest",
        reason="not_an_image",
        detail="cannot identify image file",
        original=b"GIF89a...",
        post_id="i1",
        source="folder",
        image_ref="a.gif",
    )
    return stored_letter(partition=0, offset=offset, timestamp=T0, value=letter.encode())


class Sent:
    """A ReplaySink that keeps what it was given."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    def send(self, *, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        self.records.append((key, value, dict(headers)))


def nothing_stored(post_ids: Sequence[str]) -> dict[str, str]:
    return {}


def test_a_letter_id_is_partition_and_offset() -> None:
    assert parse_letter_id("2:42") == (2, 42)
    assert worker_letter(post("p"), offset=42).id == "0:42"
    for bad in ("42", "a:1", "1:", "-1:3", "1:2:3"):
        with pytest.raises(LetterIdError):
            parse_letter_id(bad)


def test_a_record_that_is_no_dead_letter_is_kept_and_marked() -> None:
    stored = stored_letter(partition=1, offset=5, timestamp=T0, value=b"garbage")
    assert stored.letter is None and stored.reason == UNDECODABLE and stored.error
    assert summary_row(stored)["reason"] == UNDECODABLE


def test_filters_select_by_reason_half_open_time_window_and_id() -> None:
    letters = [
        worker_letter(post("a"), reason="analysis_error", offset=0, at=T0),
        worker_letter(post("b"), reason="store_rejected", offset=1, at=T0 + timedelta(hours=1)),
        worker_letter(post("c"), reason="analysis_error", offset=2, at=T0 + timedelta(hours=2)),
    ]

    def ids(where: LetterFilter) -> list[str]:
        return [s.id for s in letters if where.matches(s)]

    assert ids(LetterFilter()) == ["0:0", "0:1", "0:2"]
    assert ids(LetterFilter(reasons=frozenset({"analysis_error"}))) == ["0:0", "0:2"]
    assert ids(LetterFilter(since=T0 + timedelta(hours=1))) == ["0:1", "0:2"]
    assert ids(LetterFilter(until=T0 + timedelta(hours=2))) == ["0:0", "0:1"]
    assert ids(LetterFilter(ids=frozenset({"0:1"}))) == ["0:1"]
    assert by_reason(letters) == {"analysis_error": 2, "store_rejected": 1}
    with pytest.raises(ValueError, match="timezone"):
        LetterFilter(since=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="after"):
        LetterFilter(since=T0, until=T0)


def test_show_gives_the_error_and_the_original_post_header_but_never_its_picture() -> None:
    shown = describe(worker_letter(post("p1")))
    assert shown["reason"] == "analysis_error"
    assert shown["letter"]["detail"] == "RuntimeError('model file missing')"
    assert shown["letter"]["origin_partition"] == 3 and shown["letter"]["origin_offset"] == 17
    assert shown["kafka_headers"] == {"h": "v"}
    original = shown["original"]
    assert original["kind"] == "post message"
    assert original["post"]["post_id"] == "p1" and original["post"]["text"] == "look at this car"
    assert original["post"]["image_bytes"] == len(PICTURE)
    assert "original" not in shown["letter"]  # the bytes themselves: only their size and digest
    assert original["bytes"] == len(post("p1").encode())
    assert original["sha256"] == hashlib.sha256(post("p1").encode()).hexdigest()
    text = json.dumps(shown)
    assert PICTURE[4:68].decode("latin-1") not in text and PICTURE[4:36].hex() not in text


def test_show_names_the_kind_of_raw_bytes() -> None:
    assert describe(ingest_letter(0))["original"]["kind"] == "GIF bytes"


def test_replay_sends_the_original_unchanged_keyed_by_post_id_with_a_marker() -> None:
    letters = [worker_letter(post("p1"), offset=7), worker_letter(post("p2"), offset=8)]
    decisions = plan_replay(letters, stored_posts=nothing_stored)
    sink = Sent()
    assert replay(decisions, sink=sink, dlq_topic="carspot.posts.dlq") == 2
    key, value, headers = sink.records[0]
    assert key == b"p1" and value == post("p1").encode()
    assert Post.decode(value) == post("p1")
    assert headers[REPLAY_OF_HEADER] == b"carspot.posts.dlq/0/7"
    assert headers[REPLAY_REASON_HEADER] == b"analysis_error"


def test_a_post_already_stored_with_its_picture_is_not_sent_again() -> None:
    p = post("p1")
    decisions = plan_replay([worker_letter(p)], stored_posts=lambda ids: {"p1": p.image_sha256})
    assert [d.action for d in decisions] == ["already_stored"]
    sink = Sent()
    assert replay(decisions, sink=sink, dlq_topic="dlq") == 0 and sink.records == []


def test_a_post_id_taken_by_another_picture_is_not_sent() -> None:
    decisions = plan_replay([worker_letter(post("p1"))], stored_posts=lambda ids: {"p1": "0" * 64})
    assert [d.action for d in decisions] == ["post_id_taken"]


def test_one_post_dead_lettered_twice_is_sent_once() -> None:
    letters = [worker_letter(post("p1"), offset=1), worker_letter(post("p1"), offset=5)]
    assert [d.action for d in plan_replay(letters, stored_posts=nothing_stored)] == ["send", "duplicate"]


def test_what_cannot_be_replayed_is_refused_with_the_reason() -> None:
    truncated = worker_letter(post("big"), cap=100)
    broken = stored_letter(
        partition=0,
        offset=9,
        timestamp=T0,
        value=DeadLetter(stage="worker", reason="decode_error", detail="bad magic", original=b"XXXX").encode(),
    )
    decisions = plan_replay(
        [truncated, ingest_letter(3), broken, stored_letter(partition=0, offset=4, timestamp=T0, value=b"?")],
        stored_posts=nothing_stored,
    )
    assert [d.action for d in decisions] == ["truncated", "not_a_post", "not_a_post", "not_a_post"]
    assert decisions[1].detail == "an ingest letter holds the raw input, not a post: ingest a.gif again"
    sink = Sent()
    assert replay(decisions, sink=sink, dlq_topic="dlq") == 0 and sink.records == []


def test_a_dry_run_sends_nothing_and_reports_what_it_would() -> None:
    decisions = plan_replay([worker_letter(post("p1")), ingest_letter(1)], stored_posts=nothing_stored)
    sink = Sent()
    sent = replay(decisions, sink=sink, dlq_topic="dlq", dry_run=True)
    assert sent == 1 and sink.records == []
    report = replay_report(decisions, sent=sent, dry_run=True)
    assert report["actions"] == {"send": 1, "not_a_post": 1}
    assert [row["id"] for row in report["letters"]] == ["0:0", "0:1"]
