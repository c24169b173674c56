"""run_ingest: every post ends as exactly one of emitted, linked, skipped-as-duplicate or rejected (with a
reason), the loop is bounded, and a failing sink loses nothing (claims are released)."""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from carspot.ingest.dedup import Deduplicator, InMemoryDeduplicator, RedisDeduplicator
from carspot.ingest.images import NormalizedImage, normalize_image
from carspot.ingest.loop import IngestedPost, IngestStats, Rejection, run_ingest
from carspot.ingest.sources import BrokenRecord, FolderSource, JsonlSource, RawPost
from tests.ingest.factories import png_claiming, sparse_file

MIB = 2**20
NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


class Sinks:
    """First-class fakes for ``emit`` and ``reject``: they record, and can be told to fail."""

    def __init__(self) -> None:
        self.emitted: list[IngestedPost] = []
        self.rejected: list[Rejection] = []
        self.fail_emit: Exception | None = None
        self.fail_reject: Exception | None = None

    def emit(self, post: IngestedPost) -> None:
        if self.fail_emit is not None:
            raise self.fail_emit
        self.emitted.append(post)

    def reject(self, rejection: Rejection) -> None:
        if self.fail_reject is not None:
            raise self.fail_reject
        self.rejected.append(rejection)

    def reasons(self) -> dict[str, str]:
        return {r.post_id or r.image_ref: r.reason for r in self.rejected}


def ingest(
    posts: Iterable[RawPost | BrokenRecord],
    sinks: Sinks,
    dedup: Deduplicator | None = None,
    *,
    normalize: Callable[[bytes], NormalizedImage] = normalize_image,
    **options: Any,
) -> IngestStats:
    """run_ingest wired to the fake sinks, a fixed clock and (unless given) a fresh in-memory deduplicator."""
    return run_ingest(
        posts,
        emit=sinks.emit,
        reject=sinks.reject,
        dedup=InMemoryDeduplicator() if dedup is None else dedup,
        normalize=normalize,
        clock=lambda: NOW,
        **options,
    )


def post_of(post_id: str, data: bytes, *, ref: str = "") -> RawPost:
    return RawPost(post_id=post_id, source="test", image_ref=ref or f"mem:{post_id}", read_image=lambda: data)


@pytest.fixture
def dog(scenes_dir: Path) -> bytes:
    return (scenes_dir / "dog.jpg").read_bytes()


@pytest.fixture
def bus(scenes_dir: Path) -> bytes:
    return (scenes_dir / "bus.jpg").read_bytes()


def test_good_posts_are_emitted_with_their_metadata_and_normalised_picture(dog: bytes, bus: bytes) -> None:
    sinks = Sinks()
    raw = RawPost(
        post_id="p1",
        source="x",
        author="@a",
        text="look",
        url="https://example.org/p1",
        posted_at=datetime(2026, 11, 1, tzinfo=UTC),
        image_ref="dog.jpg",
        read_image=lambda: dog,
    )

    stats = ingest([raw, post_of("p2", bus)], sinks)

    assert (stats.seen, stats.emitted, stats.emitted_links, stats.rejected_total) == (2, 2, 0, 0)
    assert stats.stop_reason == "exhausted" and not stats.dedup_degraded
    first = sinks.emitted[0]
    assert (first.post_id, first.source, first.author, first.text, first.url) == (
        "p1",
        "x",
        "@a",
        "look",
        "https://example.org/p1",
    )
    assert first.posted_at == datetime(2026, 11, 1, tzinfo=UTC) and first.ingested_at == NOW
    assert first.image == normalize_image(dog) and not first.duplicate_of_image
    assert (first.width, first.height, first.image_sha256) == (768, 576, first.image.sha256)
    assert sinks.emitted[1].image is not None and sinks.emitted[1].image_sha256 != first.image_sha256


def test_the_same_picture_again_is_emitted_as_a_link_without_bytes(dog: bytes) -> None:
    sinks = Sinks()
    stats = ingest([post_of("p1", dog), post_of("p2", bytes(dog))], sinks)

    original, repost = sinks.emitted
    assert original.image is not None and not original.duplicate_of_image
    assert repost.image is None and repost.duplicate_of_image
    assert repost.image_sha256 == original.image_sha256
    assert (repost.width, repost.height) == (original.width, original.height)
    assert (stats.emitted, stats.emitted_links) == (1, 1)


def test_a_post_id_seen_before_is_skipped_without_reading_its_picture(dog: bytes) -> None:
    reads: list[str] = []

    def reader(name: str) -> bytes:
        reads.append(name)
        return dog

    posts = [
        RawPost(post_id="p1", source="t", image_ref="first", read_image=partial(reader, "first")),
        RawPost(post_id="p1", source="t", image_ref="again", read_image=partial(reader, "again")),
    ]
    sinks = Sinks()

    stats = ingest(posts, sinks)

    assert (stats.seen, stats.emitted, stats.duplicate_posts) == (2, 1, 1)
    assert reads == ["first"]


def test_bad_inputs_are_rejected_with_their_reason_and_the_run_goes_on(
    tmp_path: Path, dog: bytes, scenes_dir: Path
) -> None:
    files = {
        "a-zero.jpg": b"",
        "b-truncated.jpg": dog[: len(dog) // 2],
        "c-notes.jpg": b"these are my notes, not a picture\n" * 20,
        "d-page.jpg": b"<!DOCTYPE html><html><body>login</body></html>",
        "e-bomb.png": png_claiming(30_000, 30_000),
        "f-cut.png": (scenes_dir / "times-square.png").read_bytes()[:3000],
        "z-good.jpg": dog,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    sparse_file(tmp_path / "g-huge.jpg", 50 * MIB)
    sinks = Sinks()

    stats = ingest(FolderSource(tmp_path, max_bytes=20 * MIB), sinks)

    reasons = {Path(r.image_ref).name: r.reason for r in sinks.rejected}
    assert reasons == {
        "a-zero.jpg": "empty",
        "b-truncated.jpg": "truncated",
        "c-notes.jpg": "not_an_image",
        "d-page.jpg": "not_an_image",
        "e-bomb.png": "decompression_bomb",
        "f-cut.png": "truncated",
        "g-huge.jpg": "too_large",
    }
    assert [Path(p.image_ref).name for p in sinks.emitted] == ["z-good.jpg"]
    assert stats.rejected == {
        "empty": 1,
        "truncated": 2,
        "not_an_image": 2,
        "decompression_bomb": 1,
        "too_large": 1,
    }
    assert all(r.post_id and r.post_id.startswith("folder:") and r.detail for r in sinks.rejected)
    truncated = next(r for r in sinks.rejected if r.image_ref.endswith("b-truncated.jpg"))
    assert truncated.original == dog[: len(dog) // 2] and truncated.original_size == len(dog) // 2
    assert not truncated.truncated


def test_the_original_kept_for_the_dead_letter_is_capped(tmp_path: Path, dog: bytes) -> None:
    sparse_file(tmp_path / "huge.jpg", 50 * MIB, head=dog[:4096])
    (tmp_path / "half.jpg").write_bytes(dog[: len(dog) // 2])
    sinks = Sinks()

    ingest(FolderSource(tmp_path, max_bytes=20 * MIB), sinks, max_dlq_bytes=1000)

    half, huge = sorted(sinks.rejected, key=lambda r: r.image_ref)
    assert half.original == dog[:1000] and half.original_size == len(dog) // 2 and half.truncated
    assert huge.reason == "too_large"
    assert huge.original == dog[:1000], "refused unread, yet its head is kept"
    assert huge.original_size == 50 * MIB and huge.truncated


def test_a_missing_file_is_rejected_as_unreadable(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text('{"post_id": "m", "image": "no-such-file.jpg"}\n')
    sinks = Sinks()

    ingest(JsonlSource(jsonl, max_bytes=MIB), sinks)

    (rejection,) = sinks.rejected
    assert (rejection.post_id, rejection.reason, rejection.original, rejection.original_size) == (
        "m",
        "unreadable",
        b"",
        None,
    )


def test_a_replay_rejects_nothing_twice(tmp_path: Path, dog: bytes) -> None:
    (tmp_path / "good.jpg").write_bytes(dog)
    (tmp_path / "bad.jpg").write_bytes(b"not a picture")
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(
        '{"post_id": "good", "image": "good.jpg"}\n'
        '{"post_id": "bad", "image": "bad.jpg"}\n'
        '{"post_id": "bad-json-line", "image": \n'
        '{"post_id": "no-image"}\n'
    )
    dedup = InMemoryDeduplicator()
    sinks = Sinks()

    first = ingest(JsonlSource(jsonl, max_bytes=MIB), sinks, dedup)
    again = ingest(JsonlSource(jsonl, max_bytes=MIB), sinks, dedup)

    assert (first.seen, first.emitted, first.rejected) == (4, 1, {"not_an_image": 1, "broken_record": 2})
    broken = next(r for r in sinks.rejected if r.post_id is None)
    assert broken.original == b'{"post_id": "bad-json-line", "image": \n' and "invalid JSON" in broken.detail
    assert (again.seen, again.emitted, again.rejected_total) == (4, 0, 0)
    assert again.duplicate_posts == 3, "good, bad and the broken record that had a post id"
    assert again.duplicate_broken == 1
    assert len(sinks.rejected) == 3 and len(sinks.emitted) == 1


def test_a_bug_in_normalisation_costs_one_post_not_the_run(dog: bytes) -> None:
    def flaky(data: bytes) -> NormalizedImage:
        if data == b"boom":
            raise KeyError("a bug")
        return normalize_image(data)

    sinks = Sinks()
    stats = ingest([post_of("p1", b"boom"), post_of("p2", dog)], sinks, normalize=flaky)

    (rejection,) = sinks.rejected
    assert rejection.reason == "internal_error" and "KeyError" in rejection.detail and "a bug" in rejection.detail
    assert rejection.original == b"boom"
    assert [p.post_id for p in sinks.emitted] == ["p2"] and stats.rejected == {"internal_error": 1}


def test_an_os_error_from_a_custom_reader_is_unreadable(dog: bytes) -> None:
    def reader() -> bytes:
        raise PermissionError(13, "Permission denied")

    sinks = Sinks()
    ingest([RawPost(post_id="p", source="t", image_ref="r", read_image=reader)], sinks)
    assert sinks.reasons() == {"p": "unreadable"}


def counting(posts: list[RawPost], pulled: list[str]) -> Iterator[RawPost]:
    for post in posts:
        pulled.append(post.post_id)
        yield post


def test_max_posts_bounds_the_items_taken_from_the_source(dog: bytes) -> None:
    pulled: list[str] = []
    posts = [post_of(f"p{i}", dog) for i in range(5)]
    sinks = Sinks()

    stats = ingest(counting(posts, pulled), sinks, max_posts=2)

    assert pulled == ["p0", "p1"], "a live source is not read one item too far"
    assert (stats.seen, stats.emitted, stats.emitted_links, stats.stop_reason) == (2, 1, 1, "max_posts")
    assert ingest(iter(posts), Sinks(), max_posts=0).seen == 0


def test_should_stop_is_checked_between_posts(dog: bytes) -> None:
    pulled: list[str] = []
    sinks = Sinks()
    stop_after_first = lambda: len(sinks.emitted) >= 1  # noqa: E731

    stats = ingest(counting([post_of(f"p{i}", dog) for i in range(5)], pulled), sinks, should_stop=stop_after_first)

    assert pulled == ["p0"] and stats.seen == 1 and stats.stop_reason == "should_stop"


def test_a_failing_emit_releases_the_claims_and_propagates(dog: bytes) -> None:
    dedup = InMemoryDeduplicator()
    sinks = Sinks()
    sinks.fail_emit = ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        ingest([post_of("p1", dog)], sinks, dedup)

    sinks.fail_emit = None
    stats = ingest([post_of("p1", dog)], sinks, dedup)
    assert stats.emitted == 1 and stats.duplicate_posts == 0
    assert sinks.emitted[0].image is not None, "the picture claim was released too: sent with bytes"


def test_a_failing_link_emit_keeps_the_claim_of_the_picture_it_links_to(dog: bytes) -> None:
    dedup = InMemoryDeduplicator()
    sinks = Sinks()
    ingest([post_of("p1", dog)], sinks, dedup)
    sinks.fail_emit = TimeoutError("slow broker")

    with pytest.raises(TimeoutError):
        ingest([post_of("p2", dog)], sinks, dedup)

    assert dedup.claim_post("p2"), "p2 released"
    assert not dedup.claim_image(sinks.emitted[0].image_sha256), "p1's picture claim untouched"


def test_a_failing_reject_releases_the_claim_so_the_bad_post_is_retried() -> None:
    dedup = InMemoryDeduplicator()
    sinks = Sinks()
    sinks.fail_reject = ConnectionError("dlq down")
    broken = BrokenRecord(3, "invalid JSON", b"{", ref="f.jsonl:3")

    with pytest.raises(ConnectionError):
        ingest([post_of("bad", b"")], sinks, dedup)
    with pytest.raises(ConnectionError):
        ingest([broken], sinks, dedup)

    sinks.fail_reject = None
    stats = ingest([post_of("bad", b""), broken], sinks, dedup)
    assert stats.rejected == {"empty": 1, "broken_record": 1}


def test_an_interrupt_mid_post_releases_its_claim(dog: bytes) -> None:
    dedup = InMemoryDeduplicator()

    def interrupted(data: bytes) -> NormalizedImage:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest([post_of("p1", dog)], Sinks(), dedup, normalize=interrupted)
    assert dedup.claim_post("p1")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_with_redis_down_the_loop_keeps_going_and_says_so(
    dog: bytes, bus: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    dedup = RedisDeduplicator.from_url(f"redis://127.0.0.1:{closed_port()}/0", timeout_s=0.5)
    sinks = Sinks()

    with caplog.at_level(logging.WARNING):
        stats = ingest([post_of("p1", dog), post_of("p1", dog), post_of("p2", bus)], sinks, dedup)

    assert stats.dedup_degraded and stats.emitted == 3, "no de-duplication, but nothing stops or is lost"
    dedup_warnings = [r for r in caplog.records if r.name == "carspot.ingest.dedup"]
    assert len(dedup_warnings) == 1


def test_folder_end_to_end_twice_is_idempotent(tmp_path: Path, scenes_dir: Path) -> None:
    for name in ("dog.jpg", "bus.jpg", "times-square.png"):
        shutil.copy(scenes_dir / name, tmp_path / name)
    shutil.copy(scenes_dir / "dog.jpg", tmp_path / "dog-repost.jpg")
    (tmp_path / "readme.txt").write_text("hello")
    dedup = InMemoryDeduplicator()
    sinks = Sinks()
    source: Callable[[], FolderSource] = lambda: FolderSource(tmp_path, max_bytes=20 * MIB)  # noqa: E731

    first = ingest(source(), sinks, dedup)
    second = ingest(source(), sinks, dedup)

    assert (first.seen, first.emitted, first.emitted_links, first.rejected) == (5, 3, 1, {"not_an_image": 1})
    assert (second.seen, second.duplicate_posts, second.emitted, second.rejected_total) == (5, 5, 0, 0)
    linked = next(p for p in sinks.emitted if p.duplicate_of_image)
    assert linked.image_ref.endswith("dog.jpg"), "sorted: dog-repost.jpg comes first and carries the bytes"
