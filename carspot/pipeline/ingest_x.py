"""Wiring of the X/Twitter source (``carspot ingest x``): Settings → tweepy clients, safe fetcher, Redis
checkpoint and de-duplication → the producer loop → Kafka.

Every post waits for Kafka's acknowledgement before the ingest loop keeps its de-duplication claim (Redis), and
a Kafka outage is waited out with capped backoff and a warning while it lasts, as folder and JSONL ingest do:
meanwhile nothing more is taken from X (the source's bounded queue fills up), and SIGTERM during the wait
releases the post's claim and ends the run. The checkpoint (newest handled tweet id) therefore never runs ahead
of what Kafka has: it is stored every ``x_checkpoint_every`` posts, at least every ``CHECKPOINT_INTERVAL_S``
seconds, and once more at exit; a restart fetches from there, and de-duplication skips what was sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carspot.ingest.loop import EmitInterrupted, IngestedPost, IngestStats, Rejection
from carspot.ingest.x import (
    CheckpointStore,
    InMemoryCheckpoint,
    RedisCheckpoint,
    RulesSync,
    XRule,
    XSource,
    XStats,
    checkpoint_name,
    load_rules,
    make_rules_client,
    sync_rules,
)
from carspot.pipeline.app import ConfigError, ingest_posts
from carspot.pipeline.ingest_http import make_fetcher
from carspot.pipeline.settings import Settings

log = logging.getLogger("carspot.pipeline.ingest_x")

CHECKPOINT_INTERVAL_S = 10.0


@dataclass
class XRunSummary:
    rules: RulesSync | None
    ingest: IngestStats
    x: XStats
    checkpoint: int | None


def x_rules(settings: Settings, rules_file: Path | None) -> list[XRule]:
    path = rules_file or settings.x_rules_file
    if path is None:
        return []
    if not Path(path).is_file():
        raise ConfigError(f"rules file {path} not found")
    try:
        return load_rules(Path(path))
    except ValueError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from exc


def bearer_token(settings: Settings) -> str:
    if settings.x_bearer_token is None or not settings.x_bearer_token.get_secret_value():
        raise ConfigError("set CARSPOT_X_BEARER_TOKEN (an X API v2 app-only bearer token)")
    return settings.x_bearer_token.get_secret_value()


def make_checkpoint(settings: Settings, name: str) -> CheckpointStore:
    if settings.redis_url is None:
        log.warning("no CARSPOT_REDIS_URL: the X checkpoint lives in memory and a restart starts from now")
        return InMemoryCheckpoint()
    import redis

    client = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5)
    return RedisCheckpoint(client, name=name, prefix=settings.redis_key_prefix)


class CheckpointingEmitter:
    """Wraps a sink's emit/reject/flush: after every ``every`` posts (or ``interval_s``), flush, then checkpoint."""

    def __init__(
        self,
        *,
        emit: Callable[[IngestedPost], None],
        reject: Callable[[Rejection], None],
        flush: Callable[[], None],
        commit: Callable[[], object],
        every: int,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._reject = reject
        self._flush = flush
        self._commit = commit
        self._every = every
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._since = 0
        self._last = monotonic()

    def emit(self, post: IngestedPost) -> None:
        self._maybe_checkpoint()
        self._emit(post)
        self._since += 1

    def reject(self, rejection: Rejection) -> None:
        self._maybe_checkpoint()
        self._reject(rejection)
        self._since += 1

    def checkpoint(self) -> None:
        """Flush (raises if Kafka did not acknowledge everything), then move the checkpoint."""
        self._flush()
        self._commit()
        self._since = 0
        self._last = self._monotonic()

    def _maybe_checkpoint(self) -> None:
        # Before sending the next one: what the source marked handled so far is exactly what was sent.
        if self._since >= self._every or (self._since and self._monotonic() - self._last >= self._interval_s):
            self.checkpoint()


def run_x_ingest(
    settings: Settings,
    *,
    rules_file: Path | None = None,
    mode: str | None = None,
    query: str | None = None,
    max_posts: int | None = None,
    sync_only: bool = False,
    analysis_mode: str | None = None,
    install_signals: bool = True,
) -> XRunSummary:
    """Sync the stream rules (stream mode), then ingest from X into Kafka until stopped or ``max_posts``."""
    from carspot.pipeline.kafka_io import kafka_emitter
    from carspot.pipeline.metrics import exported_ingest

    token = bearer_token(settings)
    chosen_mode = mode or settings.x_mode
    if chosen_mode not in ("stream", "search"):
        raise ConfigError(f"X mode {chosen_mode!r}: use stream or search")
    rules = x_rules(settings, rules_file)
    synced: RulesSync | None = None
    if chosen_mode == "stream" or sync_only:
        if not rules:
            raise ConfigError("the filtered stream needs rules: --rules FILE or CARSPOT_X_RULES_FILE")
        synced = sync_rules(make_rules_client(token, base_url=settings.x_api_base_url), rules)
    if sync_only:
        return XRunSummary(rules=synced, ingest=IngestStats(stop_reason="rules_synced"), x=XStats(), checkpoint=None)
    if chosen_mode == "search" and not (query or rules):
        raise ConfigError("search polling needs --query or rules")

    metrics, exporting = exported_ingest(settings, source="x")
    fetcher = make_fetcher(settings)
    checkpoint = make_checkpoint(settings, checkpoint_name(chosen_mode, rules, query))
    source = XSource(
        bearer_token=token,
        fetch=fetcher.fetch_bytes,
        checkpoint=checkpoint,
        mode=chosen_mode,
        rules=rules,
        query=query,
        base_url=settings.x_api_base_url,
        interval_s=settings.x_search_interval_s,
        max_pages=settings.x_search_max_pages,
        backoff_cap_s=settings.x_backoff_max_s,
    )
    stopping = threading.Event()
    if install_signals:
        from carspot.pipeline.lifecycle import install_stop_handlers

        def stop() -> None:
            stopping.set()
            source.stop()

        install_stop_handlers(stop)
    try:
        # every post waits for Kafka's acknowledgement (and through outages) before its claim is kept
        producer, sinks = kafka_emitter(settings, mode=analysis_mode, should_stop=stopping.is_set)
    except EmitInterrupted:
        fetcher.close()
        if exporting is not None:
            exporting.close()
        stopped = IngestStats(stop_reason="should_stop")
        return XRunSummary(rules=synced, ingest=stopped, x=source.stats, checkpoint=checkpoint.load())
    emitter = CheckpointingEmitter(
        emit=sinks.emit,
        reject=sinks.reject,
        flush=sinks.flush,
        commit=source.commit_checkpoint,
        every=settings.x_checkpoint_every,
    )
    ok = False
    try:
        stats = ingest_posts(
            settings,
            source,
            emitter=emitter,
            should_stop=stopping.is_set,
            max_posts=max_posts,
            observer=metrics,
        )
        ok = True
    finally:
        source.stop()
        try:
            if ok:
                emitter.checkpoint()
        finally:
            producer.close(timeout=10)  # every post was acknowledged; never hang on a broker that is away
            fetcher.close()
            if exporting is not None:
                exporting.close()
    return XRunSummary(rules=synced, ingest=stats, x=source.stats, checkpoint=checkpoint.load())


def summary_json(summary: XRunSummary) -> dict[str, Any]:
    x = summary.x
    return {
        "rules": None
        if summary.rules is None
        else {k: [r.value for r in getattr(summary.rules, k)] for k in ("added", "removed", "kept")},
        "ingest": summary.ingest,
        "x": {k: v for k, v in vars(x).items() if k != "waits"} | {"reconnect_waits": len(x.waits)},
        "checkpoint": summary.checkpoint,
    }


__all__ = ["CheckpointingEmitter", "XRunSummary", "run_x_ingest", "summary_json", "x_rules"]
