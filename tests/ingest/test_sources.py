"""Sources: every file and every line reaches the loop (bad ones too), in a repeatable order with stable ids,
and a picture is only read when asked, within its size limit."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from carspot.ingest.errors import ImageMissing, ImageTooLarge, SourceError
from carspot.ingest.sources import (
    BrokenRecord,
    FolderSource,
    JsonlSource,
    RawPost,
    read_file_capped,
    read_file_head,
)
from tests.ingest.factories import sparse_file

MIB = 2**20


def folder_id(relative: str) -> str:
    return "folder:" + hashlib.sha1(relative.encode()).hexdigest()


@pytest.fixture
def folder(tmp_path: Path, scenes_dir: Path) -> Path:
    root = tmp_path / "drop"
    (root / "b" / "deeper").mkdir(parents=True)
    shutil.copy(scenes_dir / "dog.jpg", root / "z-dog.jpg")
    shutil.copy(scenes_dir / "times-square.png", root / "b" / "ts.png")
    (root / "b" / "deeper" / "notes.jpg").write_text("not a picture")
    (root / "a.txt").write_text("a stray text file")
    (root / "empty.gif").write_bytes(b"")
    return root


def test_folder_yields_every_file_sorted_with_ids_from_the_relative_path(folder: Path) -> None:
    posts = list(FolderSource(folder, max_bytes=20 * MIB))

    relative = ["a.txt", "b/deeper/notes.jpg", "b/ts.png", "empty.gif", "z-dog.jpg"]
    assert [Path(p.image_ref).relative_to(folder).as_posix() for p in posts] == relative
    assert [p.post_id for p in posts] == [folder_id(r) for r in relative]
    assert {p.source for p in posts} == {"folder"}
    assert posts[-1].read_image() == (folder / "z-dog.jpg").read_bytes()
    assert posts[3].read_image() == b"", "an empty file is a post too (rejected later as 'empty')"


def test_folder_ids_are_stable_across_runs_and_moves(folder: Path, tmp_path: Path) -> None:
    first = [p.post_id for p in FolderSource(folder, max_bytes=MIB)]
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "drop")
    assert [p.post_id for p in FolderSource(folder, max_bytes=MIB)] == first
    assert [p.post_id for p in FolderSource(moved, max_bytes=MIB)] == first


def test_folder_posted_at_is_the_mtime_in_utc(folder: Path) -> None:
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    os.utime(folder / "z-dog.jpg", (when.timestamp(), when.timestamp()))

    post = next(p for p in FolderSource(folder, max_bytes=MIB) if p.image_ref.endswith("z-dog.jpg"))

    assert post.posted_at == when and post.posted_at.tzinfo == UTC


def test_folder_without_recursion_takes_only_the_top_level(folder: Path) -> None:
    posts = list(FolderSource(folder, recursive=False, max_bytes=MIB))
    assert [Path(p.image_ref).name for p in posts] == ["a.txt", "empty.gif", "z-dog.jpg"]


def test_folder_skips_fifos_and_keeps_dangling_links(folder: Path) -> None:
    os.mkfifo(folder / "pipe.jpg")
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")

    posts = {Path(p.image_ref).name: p for p in FolderSource(folder, max_bytes=MIB)}

    assert "pipe.jpg" not in posts
    with pytest.raises(ImageMissing) as refused:
        posts["gone.jpg"].read_image()
    assert refused.value.reason == "unreadable"


def test_a_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        list(FolderSource(tmp_path / "nope", max_bytes=MIB))


def test_a_50_mb_file_is_refused_from_its_size_without_being_read(tmp_path: Path) -> None:
    huge = sparse_file(tmp_path / "huge.jpg", 50 * MIB)
    (post,) = FolderSource(tmp_path, max_bytes=20 * MIB)

    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as refused:
            post.read_image()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert refused.value.reason == "too_large"
    assert refused.value.size == 50 * MIB and refused.value.limit == 20 * MIB
    assert peak < MIB, peak  # refused from its size, never read
    assert post.read_head is not None
    assert post.read_head(1024) == huge.read_bytes()[:1024]


def test_reading_stops_at_the_limit_even_when_stat_said_less(tmp_path: Path) -> None:
    # /proc files report size 0 but have content: the read itself must enforce the limit.
    proc = Path("/proc/self/status")
    if not proc.exists():  # pragma: no cover - Linux only
        pytest.fail("/proc is needed for this test")
    assert proc.stat().st_size == 0
    with pytest.raises(ImageTooLarge, match="grew"):
        read_file_capped(proc, max_bytes=16)
    assert len(read_file_capped(proc, max_bytes=MIB)) > 16


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read_file_capped(fifo, max_bytes=MIB)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "reading a FIFO blocked"
    assert len(outcome) == 1 and isinstance(outcome[0], SourceError)
    with pytest.raises(SourceError):
        read_file_head(fifo, 10)


def test_missing_and_unreadable_files_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageMissing) as missing:
        read_file_capped(tmp_path / "nope.jpg", max_bytes=MIB)
    assert missing.value.reason == "unreadable"
    with pytest.raises(SourceError):
        read_file_capped(tmp_path, max_bytes=MIB)  # a directory


# --- JSONL ----------------------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_bytes(b"".join(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n" for line in lines))
    return path


def test_jsonl_posts_with_relative_and_absolute_paths(tmp_path: Path, scenes_dir: Path) -> None:
    (tmp_path / "img").mkdir()
    shutil.copy(scenes_dir / "dog.jpg", tmp_path / "img" / "dog.jpg")
    jsonl = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {
                "post_id": "1",
                "image": "img/dog.jpg",
                "author": "@a",
                "text": "nice car",
                "url": "https://example.org/1",
                "posted_at": "2026-05-01T10:00:00Z",
                "source": "x",
                "extra": "ignored",
            },
            {"post_id": 1234567890123456789, "image": str(scenes_dir / "bus.jpg")},
            {"post_id": "3", "image": "img/dog.jpg", "posted_at": "2026-05-01T12:00:00+02:00"},
            {"post_id": "4", "image": "img/dog.jpg", "posted_at": "2026-05-01T12:00:00"},
        ],
    )

    posts = list(JsonlSource(jsonl, max_bytes=20 * MIB, image_dirs=[scenes_dir]))  # bus.jpg lies there

    assert all(isinstance(p, RawPost) for p in posts)
    first, second, third, fourth = posts
    assert isinstance(first, RawPost) and isinstance(second, RawPost)
    assert isinstance(third, RawPost) and isinstance(fourth, RawPost)
    assert (first.post_id, first.source, first.author, first.text, first.url) == (
        "1",
        "x",
        "@a",
        "nice car",
        "https://example.org/1",
    )
    assert first.posted_at == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert first.read_image() == (scenes_dir / "dog.jpg").read_bytes()
    assert second.post_id == "1234567890123456789" and second.source == "jsonl" and second.posted_at is None
    assert second.read_image() == (scenes_dir / "bus.jpg").read_bytes()
    assert third.posted_at == datetime(2026, 5, 1, 10, tzinfo=UTC) and third.posted_at.tzinfo == UTC
    assert fourth.posted_at == datetime(2026, 5, 1, 12, tzinfo=UTC), "naive means UTC"


def test_jsonl_broken_lines_become_broken_records_and_the_run_goes_on(tmp_path: Path) -> None:
    jsonl = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"post_id": "ok-1", "image": "a.jpg"},
            b'{"post_id": "bad-json-line", "image": \n',
            b"\n",  # blank: skipped, but still counted as a line
            {"image": "a.jpg"},
            {"post_id": "no-image"},
            {"post_id": "", "image": "a.jpg"},
            {"post_id": True, "image": "a.jpg"},
            {"post_id": "author-int", "image": "a.jpg", "author": 5},
            {"post_id": "when-int", "image": "a.jpg", "posted_at": 1700000000},
            {"post_id": "when-word", "image": "a.jpg", "posted_at": "yesterday"},
            {"post_id": "url-image", "image": "https://example.org/a.jpg"},
            ["not", "an", "object"],
            b"\xff\xfe not utf-8\n",
            {"post_id": "ok-2", "image": "b.jpg"},
        ],
    )

    items = list(JsonlSource(jsonl, max_bytes=MIB))

    assert [i.post_id for i in items if isinstance(i, RawPost)] == ["ok-1", "ok-2"]
    broken = [i for i in items if isinstance(i, BrokenRecord)]
    assert [b.line_no for b in broken] == [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert broken[0].raw == b'{"post_id": "bad-json-line", "image": \n'
    assert "invalid JSON" in broken[0].reason and broken[0].post_id is None
    assert broken[0].ref == f"{jsonl}:2" and broken[0].source == "jsonl"
    by_id = {b.post_id: b for b in broken if b.post_id}
    assert set(by_id) == {"no-image", "author-int", "when-int", "when-word", "url-image"}
    assert "image" in by_id["no-image"].reason and "author" in by_id["author-int"].reason
    assert "posted_at" in by_id["when-word"].reason and "URL" in by_id["url-image"].reason


def test_jsonl_campaign_is_read_and_an_invalid_one_is_a_broken_record(tmp_path: Path) -> None:
    jsonl = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"post_id": "c-1", "image": "a.jpg", "campaign": "spring-2026"},
            {"post_id": "c-2", "image": "a.jpg", "campaign": "not valid!"},
            {"post_id": "c-3", "image": "a.jpg"},
        ],
    )
    items = list(JsonlSource(jsonl, max_bytes=MIB))
    assert [(i.post_id, i.campaign) for i in items if isinstance(i, RawPost)] == [("c-1", "spring-2026"), ("c-3", None)]
    [broken] = [i for i in items if isinstance(i, BrokenRecord)]
    assert broken.post_id == "c-2" and "campaign" in broken.reason


def test_jsonl_an_over_long_line_is_one_broken_record_and_does_not_hold_memory(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    with jsonl.open("wb") as handle:
        handle.write(b'{"post_id": "long", "text": "' + b"x" * (5 * MIB) + b'", "image": "a.jpg"}\n')
        handle.write(b'{"post_id": "after", "image": "a.jpg"}\n')

    items = list(JsonlSource(jsonl, max_bytes=MIB, max_line_bytes=64 * 1024))

    assert len(items) == 2
    assert isinstance(items[0], BrokenRecord) and "longer than" in items[0].reason
    assert len(items[0].raw) <= 64 * 1024 + 1
    assert isinstance(items[1], RawPost) and items[1].post_id == "after"


def test_jsonl_image_refs_respect_the_size_limit(tmp_path: Path) -> None:
    sparse_file(tmp_path / "huge.jpg", 50 * MIB)
    jsonl = write_jsonl(tmp_path / "posts.jsonl", [{"post_id": "h", "image": "huge.jpg"}])
    (post,) = JsonlSource(jsonl, max_bytes=20 * MIB)
    assert isinstance(post, RawPost)
    with pytest.raises(ImageTooLarge):
        post.read_image()


def test_raw_post_requires_aware_times_and_stores_them_in_utc() -> None:
    with pytest.raises(ValueError, match="time-zone"):
        RawPost(post_id="p", source="s", image_ref="x", read_image=bytes, posted_at=datetime(2026, 1, 1))
    paris = timezone(timedelta(hours=1))
    post = RawPost(
        post_id="p", source="s", image_ref="x", read_image=bytes, posted_at=datetime(2026, 1, 1, tzinfo=paris)
    )
    assert post.posted_at == datetime(2025, 12, 31, 23, tzinfo=UTC) and post.posted_at.tzinfo == UTC
