"""A sink that gives up waiting for Kafka because the run was asked to stop (issue 24, defect 3): the post's
claim is released, so a rerun sends it, and the run ends as ``should_stop``, not with a traceback."""

from __future__ import annotations

from pathlib import Path

from carspot.ingest.dedup import InMemoryDeduplicator
from carspot.ingest.images import normalize_image
from carspot.ingest.loop import EmitInterrupted, IngestedPost, run_ingest
from carspot.ingest.sources import RawPost


def test_an_interrupted_emit_releases_the_claim_and_stops_the_run(scenes_dir: Path) -> None:
    dog = (scenes_dir / "dog.jpg").read_bytes()
    posts = [RawPost(post_id=f"p{n}", source="t", image_ref=f"mem:{n}", read_image=lambda: dog) for n in range(3)]
    dedup = InMemoryDeduplicator()
    sent: list[IngestedPost] = []

    def emit(post: IngestedPost) -> None:
        if post.post_id == "p1":
            raise EmitInterrupted("stopped before Kafka acknowledged it")
        sent.append(post)

    stats = run_ingest(posts, emit=emit, reject=lambda r: None, dedup=dedup, normalize=normalize_image)

    assert stats.stop_reason == "should_stop" and [p.post_id for p in sent] == ["p0"] and stats.seen == 1
    assert dedup.claim_post("p1"), "p1's claim was released: a rerun sends it"
    assert not dedup.claim_post("p0")
