"""A JSONL replay reads pictures only where it may (issue 24, defect 6): under its own folder or a folder named in
the settings, symlinks resolved, never in the data dir's services folder; anything else is a dead letter that
carries no byte of the file."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.errors import PathNotAllowed
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import IngestedPost, Rejection, run_ingest
from carspot.ingest.sources import JsonlSource, RawPost
from tests.ingest.factories import sparse_file

SECRET = b"CARSPOT_DATABASE_URL=postgresql://carspot:s3cret@127.0.0.1/carspot\n"


@pytest.fixture
def layout(tmp_path: Path, scenes_dir: Path) -> dict[str, Path]:
    feed, outside, extra = tmp_path / "feed", tmp_path / "outside", tmp_path / "extra"
    for folder in (feed / "img", outside, extra, feed / ".carspot" / "services"):
        folder.mkdir(parents=True)
    shutil.copy(scenes_dir / "dog.jpg", feed / "img" / "dog.jpg")
    shutil.copy(scenes_dir / "bus.jpg", extra / "bus.jpg")
    (outside / "secret.jpg").write_bytes(SECRET)
    (feed / ".carspot" / "services" / "services.env").write_bytes(SECRET)
    sparse_file(outside / "huge.jpg", 50 << 20)
    os.symlink(outside / "secret.jpg", feed / "img" / "link-out.jpg")
    os.symlink(feed / "img" / "dog.jpg", feed / "img" / "link-in.jpg")
    return {"feed": feed, "outside": outside, "extra": extra}


def jsonl_of(folder: Path, images: dict[str, str]) -> Path:
    path = folder / "posts.jsonl"
    path.write_text("".join(json.dumps({"post_id": pid, "image": image}) + "\n" for pid, image in images.items()))
    return path


def test_only_pictures_under_the_allowed_folders_are_read(layout: dict[str, Path]) -> None:
    feed, outside, extra = layout["feed"], layout["outside"], layout["extra"]
    jsonl = jsonl_of(
        feed,
        {
            "inside": "img/dog.jpg",
            "link-in": "img/link-in.jpg",
            "extra": str(extra / "bus.jpg"),
            "dotdot": "../outside/secret.jpg",
            "absolute": str(outside / "secret.jpg"),
            "etc": "/etc/passwd",
            "link-out": "img/link-out.jpg",
            "services-env": ".carspot/services/services.env",
            "huge-outside": "../outside/huge.jpg",
        },
    )
    emitted: list[IngestedPost] = []
    rejected: list[Rejection] = []

    stats = run_ingest(
        JsonlSource(jsonl, max_bytes=20 << 20, image_dirs=[extra], denied_dirs=[feed / ".carspot" / "services"]),
        emit=emitted.append,
        reject=rejected.append,
        dedup=InMemoryDeduplicator(),
        normalize=normalize_image,
        clock=lambda: datetime.now(UTC),
    )

    assert {post.post_id for post in emitted} == {"inside", "link-in", "extra"}
    assert stats.rejected == {"path_not_allowed": 6}
    assert {r.post_id for r in rejected} == {"dotdot", "absolute", "etc", "link-out", "services-env", "huge-outside"}
    assert all(r.original == b"" and r.original_size is None for r in rejected), "not a byte of them is kept"


def test_the_policy_is_checked_before_reading(layout: dict[str, Path]) -> None:
    jsonl = jsonl_of(layout["feed"], {"out": "img/link-out.jpg"})
    (post,) = JsonlSource(jsonl, max_bytes=1 << 20)
    assert isinstance(post, RawPost)
    with pytest.raises(PathNotAllowed):
        post.read_image()
    assert post.read_head is not None
    with pytest.raises(PathNotAllowed):
        post.read_head(100)
