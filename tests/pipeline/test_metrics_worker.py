"""What a worker's metrics say about the batches it processed, read back from its own registry."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.metrics import STAGES, WorkerMetrics
from carspot.pipeline.worker import Worker
from tests.pipeline.test_worker import TOPIC, RecordingWriter, analyze, decode, fill, post


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def run_worker(values: list[bytes], *, lags: dict[int, int] | None = None, **kw: object) -> WorkerMetrics:
    queue = InProcessQueue(topic=TOPIC, capacity=100)
    fill(queue, values)
    metrics = WorkerMetrics(CollectorRegistry())
    Worker(
        source=queue,
        dead_letters=MemoryDeadLetterSink(),
        analyze=analyze,
        decode_image=decode,
        write_batch=RecordingWriter(queue),
        poll_timeout_s=0.01,
        metrics=metrics,
        partition_lag=(lambda: lags) if lags is not None else None,
        **kw,  # type: ignore[arg-type]
    ).run(until=lambda: queue.drained)
    return metrics


def test_messages_read_analysed_linked_and_dead_lettered_by_reason() -> None:
    bad_image = b"broken-jpeg"
    undecodable = Post(
        post_id="p-bad",
        source="test",
        ingested_at=datetime.now(UTC),
        image_sha256=hashlib.sha256(bad_image).hexdigest(),
        width=1,
        height=1,
        image=bad_image,
    )
    values = [post(i).encode() for i in range(5)] + [post(9, link=True).encode(), b"junk", undecodable.encode()]
    m = run_worker(values, batch_max_messages=3)
    r = m.registry
    assert sample(r, "carspot_worker_messages_read_total") == 8
    assert sample(r, "carspot_worker_messages_analysed_total") == 5
    assert sample(r, "carspot_worker_messages_linked_total", kind="repost") == 1
    assert sample(r, "carspot_worker_messages_linked_total", kind="already_analysed") == 0
    assert sample(r, "carspot_worker_dead_letters_total", reason="decode_error") == 1
    assert sample(r, "carspot_worker_dead_letters_total", reason="image_decode_error") == 1
    assert sample(r, "carspot_worker_batch_messages_count") == 3  # 3 + 3 + 2
    assert sample(r, "carspot_worker_batch_messages_sum") == 8


def test_stage_latencies_ingest_to_stored_and_the_last_write() -> None:
    before = datetime.now(UTC)
    old = Post(
        post_id="p-old",
        source="test",
        ingested_at=before - timedelta(seconds=90),
        image_sha256=hashlib.sha256(b"old").hexdigest(),
        width=64,
        height=48,
        image=b"old",
    )
    m = run_worker([post(1).encode(), post(2).encode(), old.encode()], batch_max_messages=10)
    r = m.registry
    assert sample(r, "carspot_worker_stage_duration_seconds_count", stage="decode") == 3
    assert sample(r, "carspot_worker_stage_duration_seconds_count", stage="analyse") == 1  # one group of 3
    assert sample(r, "carspot_worker_stage_duration_seconds_count", stage="write") == 1
    assert sample(r, "carspot_worker_stage_duration_seconds_count", stage="commit") == 1
    assert sample(r, "carspot_worker_ingest_to_stored_seconds_count") == 3
    assert sample(r, "carspot_worker_ingest_to_stored_seconds_bucket", le="60.0") == 2  # the fresh two
    assert sample(r, "carspot_worker_ingest_to_stored_seconds_sum") >= 90
    assert sample(r, "carspot_worker_last_write_timestamp_seconds") >= before.timestamp()
    assert (
        r.get_sample_value("carspot_worker_model_info", {"version": "test", "mode": "detector", "detector": "fake"})
        == 1.0
    )


def test_every_stage_and_link_kind_is_exported_before_anything_happens() -> None:
    r = WorkerMetrics(CollectorRegistry()).registry
    for stage in STAGES:
        assert r.get_sample_value("carspot_worker_stage_duration_seconds_count", {"stage": stage}) == 0
    assert r.get_sample_value("carspot_worker_last_write_timestamp_seconds") == 0


def test_consumer_lag_per_owned_partition_and_a_revoked_one_disappears() -> None:
    m = WorkerMetrics(CollectorRegistry())
    m.lag({0: 12, 3: 0})
    assert sample(m.registry, "carspot_worker_consumer_lag_messages", partition="0") == 12
    assert m.registry.get_sample_value("carspot_worker_consumer_lag_messages", {"partition": "3"}) == 0
    m.lag({3: 4})
    assert m.registry.get_sample_value("carspot_worker_consumer_lag_messages", {"partition": "0"}) is None
    assert sample(m.registry, "carspot_worker_consumer_lag_messages", partition="3") == 4


def test_the_worker_reads_the_lag_after_each_poll() -> None:
    m = run_worker([post(1).encode()], lags={2: 7})
    assert sample(m.registry, "carspot_worker_consumer_lag_messages", partition="2") == 7


def test_service_reachability_is_one_gauge_per_service() -> None:
    m = WorkerMetrics(CollectorRegistry())
    m.services.set("kafka", True)
    m.services.set("postgresql", False)
    assert sample(m.registry, "carspot_service_up", service="kafka") == 1
    assert m.registry.get_sample_value("carspot_service_up", {"service": "postgresql"}) == 0


def test_a_reason_that_is_not_a_code_is_counted_as_other() -> None:
    m = WorkerMetrics(CollectorRegistry())
    m.dead_lettered(["analysis_error", "Connection refused by 10.0.0.7", "x" * 200])
    assert sample(m.registry, "carspot_worker_dead_letters_total", reason="analysis_error") == 1
    assert sample(m.registry, "carspot_worker_dead_letters_total", reason="other") == 2
