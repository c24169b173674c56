"""What ingest's metrics count, for the loop every batch source uses and for the HTTP push path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import IngestedPost, Rejection, run_ingest
from carspot.ingest.phash import InMemoryPhashIndex
from carspot.ingest.push import PushIngest, PushRejected
from carspot.ingest.sources import BrokenRecord, RawPost
from carspot.pipeline.metrics import IngestMetrics


def raw(post_id: str, data: bytes) -> RawPost:
    return RawPost(post_id=post_id, source="test", image_ref=f"mem:{post_id}", read_image=lambda: data)


def resized(data: bytes, *, scale: float) -> bytes:
    """The same picture re-encoded at another size: a near-duplicate for the perceptual hash."""
    with Image.open(io.BytesIO(data)) as im:
        small = im.convert("RGB").resize((int(im.width * scale), int(im.height * scale)))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()


def count(metrics: IngestMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_seen_emitted_by_kind_rejected_by_reason_and_duplicates(scenes_dir: Path) -> None:
    dog = (scenes_dir / "dog.jpg").read_bytes()
    bus = (scenes_dir / "bus.jpg").read_bytes()
    items = [
        raw("a", dog),
        raw("b", bus),
        raw("a", dog),  # the same post id again
        raw("c", dog),  # the same picture under a new post id
        raw("d", resized(bus, scale=0.7)),  # a near-duplicate
        raw("e", b"not an image"),
        BrokenRecord(line_no=3, reason="not JSON", raw=b"{", ref="posts.jsonl:3"),
        BrokenRecord(line_no=3, reason="not JSON", raw=b"{", ref="posts.jsonl:3"),  # dead-lettered already
    ]
    metrics = IngestMetrics(source="jsonl")
    emitted: list[IngestedPost] = []
    rejected: list[Rejection] = []
    stats = run_ingest(
        items,
        emit=emitted.append,
        reject=rejected.append,
        dedup=InMemoryDeduplicator(),
        normalize=normalize_image,
        near_duplicates=InMemoryPhashIndex(),
        observer=metrics,
    )
    assert count(metrics, "carspot_ingest_posts_seen_total", source="jsonl") == stats.seen == 8
    assert count(metrics, "carspot_ingest_posts_emitted_total", source="jsonl", kind="picture") == 2
    assert count(metrics, "carspot_ingest_posts_emitted_total", source="jsonl", kind="repost") == 1
    assert count(metrics, "carspot_ingest_posts_emitted_total", source="jsonl", kind="near_duplicate") == 1
    assert count(metrics, "carspot_ingest_posts_rejected_total", source="jsonl", reason="not_an_image") == 1
    assert count(metrics, "carspot_ingest_posts_rejected_total", source="jsonl", reason="broken_record") == 1
    assert count(metrics, "carspot_ingest_posts_duplicate_total", source="jsonl", kind="post_id") == 1
    assert count(metrics, "carspot_ingest_posts_duplicate_total", source="jsonl", kind="broken_record") == 1
    assert {r.reason for r in rejected} == {"not_an_image", "broken_record"}


def test_the_push_path_counts_each_request_s_post(scenes_dir: Path) -> None:
    metrics = IngestMetrics(source="http")
    push = PushIngest(
        submit=lambda post: None,
        dead_letter=lambda rejection: None,
        dedup=InMemoryDeduplicator(),
        normalize=normalize_image,
        observer=metrics,
    )
    dog = (scenes_dir / "dog.jpg").read_bytes()
    assert push(raw("http:1", dog)).status == "accepted"
    assert push(raw("http:1", dog)).status == "duplicate"
    with pytest.raises(PushRejected):
        push(raw("http:2", b"GIF89a nonsense"))
    assert count(metrics, "carspot_ingest_posts_seen_total", source="http") == 3
    assert count(metrics, "carspot_ingest_posts_emitted_total", source="http", kind="picture") == 1
    assert count(metrics, "carspot_ingest_posts_duplicate_total", source="http", kind="post_id") == 1
    assert (
        sum(
            s.value
            for family in metrics.registry.collect()
            if family.name == "carspot_ingest_posts_rejected"
            for s in family.samples
            if s.name.endswith("_total")
        )
        == 1
    )
