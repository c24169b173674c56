"""Hostile JSONL lines (issue 24, defects 1 and 2): each becomes one ``broken_record`` dead letter that can be
encoded, the run goes on to the good lines, and what ingest sends the worker's decoding accepts."""

from __future__ import annotations

import json
import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.fields import MAX_ID_BYTES
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import run_ingest
from carspot.ingest.sources import JsonlSource, RawPost
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.ingesting import SinkEmitter
from carspot.pipeline.inprocess import InProcessQueue
from carspot.pipeline.message import DecodeError, Post

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


class EncodedDeadLetters:
    """A dead-letter sink that encodes every letter as the Kafka sink would, and keeps the bytes."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def send(self, letter: DeadLetter) -> None:
        self.records.append((letter.key, letter.encode()))

    def flush(self) -> None:
        """Nothing buffered."""


def hostile_lines() -> list[bytes]:
    """Raw lines as a hostile file would hold them (``\\ud800`` is JSON's escape of a lone surrogate)."""
    return [
        b'{"post_id": "s1", "image": "ok.jpg", "text": "x\\ud800y"}\n',
        b'{"post_id": "s\\udfff2", "image": "ok.jpg"}\n',
        json.dumps({"post_id": "L" * 10_000, "image": "ok.jpg"}).encode() + b"\n",
        json.dumps({"post_id": "nul\u0000id", "image": "ok.jpg"}).encode() + b"\n",
        json.dumps({"post_id": "new\nline", "image": "ok.jpg"}).encode() + b"\n",
        json.dumps({"post_id": "nul-text", "image": "ok.jpg", "author": "a\u0000b"}).encode() + b"\n",
        b'{"post_id": "s-image", "image": "ok\\ud800.jpg"}\n',
        json.dumps({"post_id": "good", "image": "ok.jpg", "text": "caf\u00e9 \U0001f697"}).encode() + b"\n",
    ]


@pytest.fixture
def jsonl(tmp_path: Path, scenes_dir: Path) -> Path:
    shutil.copy(scenes_dir / "dog.jpg", tmp_path / "ok.jpg")
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"".join(hostile_lines()))
    return path


def test_hostile_lines_become_encodable_dead_letters_and_the_good_line_is_sent(jsonl: Path) -> None:
    queue = InProcessQueue(topic="posts", capacity=16)
    letters = EncodedDeadLetters()
    emitter = SinkEmitter(posts=queue, dead_letters=letters)

    stats = run_ingest(
        JsonlSource(jsonl, max_bytes=1 << 24),
        emit=emitter.emit,
        reject=emitter.reject,
        dedup=InMemoryDeduplicator(),
        normalize=normalize_image,
        clock=lambda: NOW,
    )

    assert stats.stop_reason == "exhausted"
    assert stats.emitted == 1 and stats.rejected == {"broken_record": 7}
    decoded = [DeadLetter.decode(value) for _key, value in letters.records]
    assert all(letter.reason == "broken_record" for letter in decoded)
    assert [letter.post_id for letter in decoded] == ["s1", None, None, None, None, "nul-text", "s-image"]
    assert [letter.original for letter in decoded] == hostile_lines()[:7], "each letter keeps its line"
    assert "10000 bytes long" in decoded[2].detail and "control" in decoded[4].detail
    (message,) = queue.poll(timeout_s=0, max_records=10)
    sent = Post.decode(message.value)
    assert (sent.post_id, sent.text) == ("good", "caf\u00e9 \U0001f697")


def test_a_rerun_takes_every_hostile_line_as_already_dead_lettered(jsonl: Path) -> None:
    dedup = InMemoryDeduplicator()
    runs = []
    for _ in range(2):
        letters = EncodedDeadLetters()
        emitter = SinkEmitter(posts=InProcessQueue(topic="posts"), dead_letters=letters)
        runs.append(
            run_ingest(
                JsonlSource(jsonl, max_bytes=1 << 24),
                emit=emitter.emit,
                reject=emitter.reject,
                dedup=dedup,
                normalize=normalize_image,
            )
        )
    assert runs[1].rejected_total == 0 and runs[1].emitted == 0
    assert runs[1].duplicate_posts + runs[1].duplicate_broken == 8


@pytest.mark.parametrize(
    "post_id",
    ["L" * (MAX_ID_BYTES + 1), "nul\x00", "tab\tid", "lone\ud800", "\x7f"],
)
def test_ingest_and_the_worker_refuse_the_same_post_ids(post_id: str) -> None:
    with pytest.raises(ValueError):
        RawPost(post_id=post_id, source="t", image_ref="mem", read_image=bytes)
    with pytest.raises(DecodeError):
        Post.decode(link_message(post_id))


def link_message(post_id: str) -> bytes:
    """A version-1 link message as any producer could write it (JSON escapes, so a lone surrogate fits)."""
    header = {
        "post_id": post_id,
        "source": "t",
        "ingested_at": NOW.isoformat(),
        "image_sha256": "0" * 64,
        "width": 1,
        "height": 1,
        "has_image": False,
    }
    raw = json.dumps(header).encode()
    return struct.pack(">3sBI", b"CSP", 1, len(raw)) + raw


def test_the_longest_allowed_post_id_passes_both() -> None:
    post_id = "é" * (MAX_ID_BYTES // 2)
    RawPost(post_id=post_id, source="t", image_ref="mem", read_image=bytes)
    assert Post.decode(link_message(post_id)).post_id == post_id
