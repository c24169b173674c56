"""Wiring of the HTTP push source (``carspot ingest http``) and of the safe fetcher, from Settings to Kafka.

A pushed post is answered 202 only once Kafka acknowledged it: each submit waits for its own record's ack
(``future.get``), so concurrent requests do not wait for each other's batches.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from carspot.ingest.fetch import AddressPolicy, FetchLimits, SafeFetcher
from carspot.ingest.loop import IngestedPost, Rejection
from carspot.pipeline.app import ConfigError, make_deduplicator, make_near_duplicates, make_normalizer
from carspot.pipeline.ingesting import dead_letter_from, post_from
from carspot.pipeline.settings import Settings

if TYPE_CHECKING:
    from kafka import KafkaProducer


log = logging.getLogger("carspot.pipeline.ingest_http")


def make_fetcher(settings: Settings) -> SafeFetcher:
    """The one safe fetcher of an ingest process, with the limits from Settings."""
    # httpx logs every request with its full URL (signed media URLs carry tokens); our fetcher logs safely.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").getEffectiveLevel()))
    return SafeFetcher(
        policy=AddressPolicy(allow_loopback=settings.fetch_allow_loopback),
        limits=FetchLimits(
            max_bytes=settings.image_max_bytes,
            connect_timeout_s=settings.fetch_connect_timeout_s,
            read_timeout_s=settings.fetch_read_timeout_s,
            total_timeout_s=settings.fetch_total_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            attempts=settings.fetch_attempts,
            backoff_max_s=settings.fetch_backoff_max_s,
        ),
    )


class AckedKafkaSubmit:
    """``submit`` and ``dead_letter`` for the push endpoint: send one record and wait for its ack."""

    def __init__(self, *, producer: KafkaProducer, settings: Settings, mode: str | None = None) -> None:
        self._producer = producer
        self._posts_topic = settings.posts_topic
        self._dlq_topic = settings.dlq_topic
        self._timeout_s = settings.http_push_ack_timeout_s
        self._mode = mode
        self.last_send_ok = True

    def healthy(self) -> bool:
        """For ``/healthz``: the last record sent was acknowledged (true before the first one)."""
        return self.last_send_ok

    def submit(self, ingested: IngestedPost) -> None:
        value = post_from(ingested, mode=self._mode).encode()
        self._send(self._posts_topic, ingested.post_id.encode(), value)

    def dead_letter(self, rejection: Rejection) -> None:
        letter = dead_letter_from(rejection)
        self._send(self._dlq_topic, letter.key, letter.encode())

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            self._producer.send(topic, key=key, value=value).get(self._timeout_s)
        except Exception:
            self.last_send_ok = False
            raise
        self.last_send_ok = True


def serve_http_push(
    settings: Settings, *, host: str | None = None, port: int | None = None, mode: str | None = None
) -> None:
    """Serve ``POST /v1/posts`` until interrupted (uvicorn handles SIGINT/SIGTERM gracefully)."""
    import uvicorn

    from carspot.ingest.push import PushIngest, create_push_app
    from carspot.pipeline.kafka_io import make_producer
    from carspot.pipeline.metrics import exported_ingest

    if settings.http_push_token is None or not settings.http_push_token.get_secret_value():
        raise ConfigError("set CARSPOT_HTTP_PUSH_TOKEN: the push endpoint never runs without authentication")
    producer = make_producer(
        bootstrap=settings.kafka_bootstrap,
        max_message_bytes=settings.kafka_max_message_bytes,
        compression=settings.kafka_compression,
    )
    producer.partitions_for(settings.posts_topic)  # start-up: fail now, not on the first post, without Kafka
    metrics, exporting = exported_ingest(settings, source="http")
    fetcher = make_fetcher(settings)
    sink = AckedKafkaSubmit(producer=producer, settings=settings, mode=mode)
    ingest_one = PushIngest(
        submit=sink.submit,
        dead_letter=sink.dead_letter,
        dedup=make_deduplicator(settings),
        normalize=make_normalizer(settings),
        near_duplicates=make_near_duplicates(settings),
        max_dlq_bytes=settings.dlq_max_original_bytes,
        observer=metrics,
    )
    app = create_push_app(
        token=settings.http_push_token,
        ingest_one=ingest_one,
        fetch=fetcher.fetch_bytes,
        max_image_bytes=settings.image_max_bytes,
        healthy=sink.healthy,
    )
    bind_host = host or settings.http_push_host
    bind_port = port or settings.http_push_port
    log.info("HTTP push endpoint on http://%s:%d/v1/posts (OpenAPI at /docs)", bind_host, bind_port)
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_config=None, access_log=False)
    finally:
        fetcher.close()
        producer.close(timeout=10)  # every post was acknowledged or answered 503; never hang on a broker away
        if exporting is not None:
            exporting.close()


__all__ = ["AckedKafkaSubmit", "make_fetcher", "make_near_duplicates", "serve_http_push"]
