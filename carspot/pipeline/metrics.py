"""CarSpot's Prometheus metrics: every series any process exports, and the HTTP endpoint that serves them.

One module so names, labels and buckets live in one place (docs/metrics.md lists them; the Grafana dashboard
and the alert rules in ``deploy/`` use exactly these). Each process builds the part it needs on its own
:class:`~prometheus_client.CollectorRegistry` — :class:`WorkerMetrics`, :class:`IngestMetrics`,
:class:`DashboardMetrics` — and calls them through small typed methods; tests read the registry back with
``registry.get_sample_value``. Nothing is registered at import time.

The endpoint (:func:`serve_metrics`) is off unless ``CARSPOT_METRICS_PORT`` is set. Several processes on one
host each bind ``CARSPOT_METRICS_PORT + CARSPOT_METRICS_INDEX`` (:func:`metrics_port`): the N workers of one
host get N consecutive ports, one scrape target each, and never share a registry (no multiprocess mode: every
series, Info and gauges included, keeps its plain single-process meaning). A port already taken is a
:class:`MetricsPortTaken` at start-up, never a process that runs unobserved.

Labels are bounded: reasons are the dead-letter reason codes the code defines, ``source`` is the ingest path
(folder, jsonl, x, http), ``stage`` one of four, ``partition`` at most the topic's partition count, ``service``
one of three, ``route`` the dashboard's route templates (never a raw URL).
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from carspot.pipeline.settings import Settings

log = logging.getLogger("carspot.pipeline.metrics")

Stage = Literal["decode", "analyse", "write", "commit"]
STAGES: tuple[Stage, ...] = ("decode", "analyse", "write", "commit")
SERVICES = ("kafka", "postgresql", "redis")
INGEST_SOURCES = ("folder", "jsonl", "x", "http")

# Seconds: a decode takes milliseconds, an analysis group up to seconds, a write or commit tens of ms to seconds.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Ingest to stored: the soak target is p95 <= 2 s; a backlog can reach minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Messages per batch: CARSPOT_BATCH_MAX_MESSAGES is 32 by default.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_REASON_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def reason_label(reason: object) -> str:
    """A reason code as a label value: the code itself, or ``other`` for anything that is not one (an exception
    of a library whose ``reason`` attribute is free text must not become a label value of its own)."""
    return reason if isinstance(reason, str) and _REASON_CODE.match(reason) else "other"


class MetricsPortTaken(OSError):
    """The metrics port of this process is already bound (another process, or the index rule not followed)."""


def metrics_port(*, base: int, index: int) -> int:
    """The port a process exports on: ``base + index``, so N processes of one host get N consecutive ports."""
    if not 1 <= base <= 65535:
        raise ValueError(f"metrics port must be 1..65535, got {base}")
    if index < 0 or base + index > 65535:
        raise ValueError(f"metrics index {index} puts port {base} + {index} outside 1..65535")
    return base + index


@dataclass(frozen=True)
class MetricsServer:
    """A running ``/metrics`` endpoint; ``close`` stops it (tests, and the end of a bounded run)."""

    host: str
    port: int
    _stop: Callable[[], None]

    def close(self) -> None:
        self._stop()


def serve_metrics(registry: CollectorRegistry, *, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortTaken(
            f"cannot export metrics on {host}:{port} ({exc.strerror or exc}); give each process of a host its own "
            "CARSPOT_METRICS_INDEX (it binds CARSPOT_METRICS_PORT + index) or another CARSPOT_METRICS_PORT"
        ) from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    log.info("metrics on http://%s:%d/metrics", host, port)
    return MetricsServer(host=host, port=port, _stop=stop)


class WorkerMetrics:
    """What an analysis worker reports (``carspot_worker_*`` and ``carspot_service_up``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._read = Counter("carspot_worker_messages_read", "Messages taken from the posts topic.", registry=r)
        self._analysed = Counter(
            "carspot_worker_messages_analysed", "Pictures analysed and stored (one per new picture).", registry=r
        )
        self._linked = Counter(
            "carspot_worker_messages_linked",
            "Posts stored without an analysis of their own: a repost of a sent picture (kind=repost) or a picture "
            "already analysed in that mode (kind=already_analysed).",
            ["kind"],
            registry=r,
        )
        self._dead = Counter(
            "carspot_worker_dead_letters", "Messages dead-lettered by the worker, by reason.", ["reason"], registry=r
        )
        self._stage = Histogram(
            "carspot_worker_stage_duration_seconds",
            "Seconds per stage: decode (one image), analyse (one group of images), write (one batch transaction), "
            "commit (one batch's dead letters and offsets).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self._latency = Histogram(
            "carspot_worker_ingest_to_stored_seconds",
            "Seconds from a post's ingest (its ingested_at) to its database commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._batch = Histogram(
            "carspot_worker_batch_messages", "Messages per processed batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self._lag = Gauge(
            "carspot_worker_consumer_lag_messages",
            "Messages behind the end of each partition this worker owns (high watermark minus position).",
            ["partition"],
            registry=r,
        )
        self._model = Info(
            "carspot_worker_model", "The brand model, mode and detector of the latest analysis.", registry=r
        )
        self._last_write = Gauge(
            "carspot_worker_last_write_timestamp_seconds",
            "Unix time of the last successful database write of a batch (0: none yet).",
            registry=r,
        )
        self.services = ServiceGauge(r)
        # Every stage and kind present from the start (rate() has a zero to begin from), the children kept:
        # ``labels()`` per call costs more than the observation itself.
        self._stages = {stage: self._stage.labels(stage=stage) for stage in STAGES}
        self._link_kinds = {kind: self._linked.labels(kind=kind) for kind in ("repost", "already_analysed")}
        self._partitions: set[str] = set()

    def read(self, count: int) -> None:
        self._read.inc(count)

    def analysed(self, count: int = 1) -> None:
        self._analysed.inc(count)

    def linked(self, count: int = 1, *, kind: Literal["repost", "already_analysed"]) -> None:
        self._link_kinds[kind].inc(count)

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self._dead.labels(reason=reason_label(reason)).inc()

    def stage(self, stage: Stage, seconds: float) -> None:
        self._stages[stage].observe(seconds)

    def batch(self, messages: int) -> None:
        self._batch.observe(messages)

    def stored(self, ingested_at: Iterable[datetime], *, now: datetime | None = None) -> None:
        """A batch is committed to the database: its posts' ingest→stored latencies and the write time."""
        at = now or datetime.now(UTC)
        for ingested in ingested_at:
            self._latency.observe(max(0.0, (at - ingested).total_seconds()))
        self._last_write.set(at.timestamp())

    def lag(self, lags: Mapping[int, int]) -> None:
        """The lag of the partitions owned now; those no longer owned are dropped (another worker reports them)."""
        owned = {str(p) for p in lags}
        for gone in self._partitions - owned:
            self._lag.remove(gone)
        for partition, behind in lags.items():
            self._lag.labels(partition=str(partition)).set(max(0, behind))
        self._partitions = owned

    def model(self, *, version: str, mode: str, detector: str) -> None:
        self._model.info({"version": version, "mode": mode, "detector": detector})


class IngestMetrics:
    """What ingest reports (``carspot_ingest_*`` and ``carspot_service_up``), labelled by its ``source`` path.

    Implements ``carspot.ingest.loop.IngestObserver``, the interface the ingest loop calls."""

    def __init__(self, *, source: str, registry: CollectorRegistry | None = None) -> None:
        if source not in INGEST_SOURCES:
            raise ValueError(f"source must be one of {INGEST_SOURCES}, got {source!r}")
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._source = source
        self._seen = Counter(
            "carspot_ingest_posts_seen", "Items taken from the source, broken records included.", ["source"], registry=r
        )
        self._emitted = Counter(
            "carspot_ingest_posts_emitted",
            "Posts put in the posts topic: with their picture (kind=picture), linked to the same picture sent "
            "before (kind=repost), or to a near-duplicate found by perceptual hash (kind=near_duplicate).",
            ["source", "kind"],
            registry=r,
        )
        self._rejected = Counter(
            "carspot_ingest_posts_rejected",
            "Posts dead-lettered at ingest, by reason.",
            ["source", "reason"],
            registry=r,
        )
        self._duplicates = Counter(
            "carspot_ingest_posts_duplicate",
            "Items skipped as already ingested: a post id seen before (kind=post_id) or a broken record already "
            "dead-lettered (kind=broken_record).",
            ["source", "kind"],
            registry=r,
        )
        self.services = ServiceGauge(r)
        self._seen.labels(source=source)
        for kind in ("picture", "repost", "near_duplicate"):
            self._emitted.labels(source=source, kind=kind)
        for kind in ("post_id", "broken_record"):
            self._duplicates.labels(source=source, kind=kind)

    def seen(self) -> None:
        self._seen.labels(source=self._source).inc()

    def emitted(self, *, kind: Literal["picture", "repost", "near_duplicate"]) -> None:
        self._emitted.labels(source=self._source, kind=kind).inc()

    def rejected(self, *, reason: str) -> None:
        self._rejected.labels(source=self._source, reason=reason_label(reason)).inc()

    def duplicate(self, *, kind: Literal["post_id", "broken_record"]) -> None:
        self._duplicates.labels(source=self._source, kind=kind).inc()


class DashboardMetrics:
    """What the web dashboard reports: requests by route template and status, and the database's reachability."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "carspot_dashboard_requests",
            "HTTP requests by route template and status code.",
            ["route", "code"],
            registry=r,
        )
        self._duration = Histogram(
            "carspot_dashboard_request_duration_seconds",
            "Seconds to answer a request, by route template.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.services = ServiceGauge(r)

    def request(self, *, route: str, code: int, seconds: float) -> None:
        self._requests.labels(route=route, code=str(code)).inc()
        self._duration.labels(route=route).observe(seconds)


class ServiceGauge:
    """``carspot_service_up{service}``: 1 when this process reached the service at its last probe, else 0."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(
            "carspot_service_up",
            "1 if this process reached the service (kafka, postgresql, redis) at its last probe, else 0.",
            ["service"],
            registry=registry,
        )

    def set(self, service: str, up: bool) -> None:
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}, got {service!r}")
        self._gauge.labels(service=service).set(1.0 if up else 0.0)


def tcp_reachable(addresses: Iterable[tuple[str, int]], *, timeout_s: float = 1.0) -> bool:
    """True when one of ``addresses`` accepts a TCP connection within ``timeout_s``."""
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def service_addresses(
    *, kafka_bootstrap: str | None = None, database_url: str | None = None, redis_url: str | None = None
) -> dict[str, list[tuple[str, int]]]:
    """The (host, port) pairs to probe per service, from the settings' addresses; SQLite has none."""
    found: dict[str, list[tuple[str, int]]] = {}
    if kafka_bootstrap:
        pairs = []
        for server in kafka_bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            pairs.append((host.strip("[]") or "127.0.0.1", int(port or 9092)))
        found["kafka"] = pairs
    if database_url and database_url.startswith("postgresql"):
        parts = urlsplit(database_url)
        found["postgresql"] = [(parts.hostname or "127.0.0.1", parts.port or 5432)]
    if redis_url:
        parts = urlsplit(redis_url)
        found["redis"] = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
    return found


class ServiceProbe:
    """Probes each service every ``interval_s`` from a daemon thread and sets ``carspot_service_up``.

    A probe of its own, not the outcome of the process's last call: an idle worker still notices PostgreSQL
    going away, and the alert fires before the next post needs it."""

    def __init__(
        self,
        gauge: ServiceGauge,
        checks: Mapping[str, Callable[[], bool]],
        *,
        interval_s: float = 10.0,
    ) -> None:
        self._gauge = gauge
        self._checks = dict(checks)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="carspot-service-probe", daemon=True)

    def probe_once(self) -> None:
        for service, check in self._checks.items():
            try:
                up = check()
            except Exception as exc:  # a probe must never take the process down
                log.warning("probing %s failed: %r", service, exc)
                up = False
            self._gauge.set(service, up)

    def start(self) -> ServiceProbe:
        self.probe_once()  # a value before the first scrape
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.probe_once()

    def close(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def tcp_checks(
    addresses: Mapping[str, list[tuple[str, int]]], *, timeout_s: float = 1.0
) -> dict[str, Callable[[], bool]]:
    """One TCP reachability check per service."""
    return {
        service: functools.partial(tcp_reachable, pairs, timeout_s=timeout_s) for service, pairs in addresses.items()
    }


@dataclass(frozen=True)
class Exporting:
    """A process's running endpoint and service probe; ``close`` stops both."""

    server: MetricsServer
    probe: ServiceProbe

    def close(self) -> None:
        self.probe.close()
        self.server.close()


def start_exporting(
    settings: Settings, *, registry: CollectorRegistry, services: ServiceGauge, probe: Iterable[str]
) -> Exporting | None:
    """Serve ``registry`` on this process's port and probe the services named in ``probe`` (those configured);
    None when ``CARSPOT_METRICS_PORT`` is unset or 0."""
    if not settings.metrics_port:
        return None
    port = metrics_port(base=settings.metrics_port, index=settings.metrics_index)
    wanted = set(probe)
    addresses = service_addresses(
        kafka_bootstrap=settings.kafka_bootstrap if "kafka" in wanted else None,
        database_url=settings.database_url.get_secret_value() if "postgresql" in wanted else None,
        redis_url=settings.redis_url.get_secret_value() if "redis" in wanted and settings.redis_url else None,
    )
    checks = tcp_checks(addresses)
    service_probe = ServiceProbe(services, checks, interval_s=settings.metrics_probe_interval_s).start()
    try:
        server = serve_metrics(registry, host=settings.metrics_host, port=port)
    except BaseException:
        service_probe.close()
        raise
    return Exporting(server=server, probe=service_probe)


def exported_worker(settings: Settings) -> tuple[WorkerMetrics, Exporting | None]:
    """A worker's metrics, served when ``CARSPOT_METRICS_PORT`` is set (probing Kafka and PostgreSQL)."""
    metrics = WorkerMetrics()
    return metrics, start_exporting(
        settings, registry=metrics.registry, services=metrics.services, probe=("kafka", "postgresql")
    )


def exported_ingest(settings: Settings, *, source: str) -> tuple[IngestMetrics, Exporting | None]:
    """An ingest process's metrics for its ``source`` path, served when ``CARSPOT_METRICS_PORT`` is set
    (probing Kafka, and Redis when de-duplication uses it)."""
    metrics = IngestMetrics(source=source)
    return metrics, start_exporting(
        settings, registry=metrics.registry, services=metrics.services, probe=("kafka", "redis")
    )


def exported_dashboard(settings: Settings) -> tuple[DashboardMetrics, Exporting | None]:
    """The dashboard's metrics, served when ``CARSPOT_METRICS_PORT`` is set (probing PostgreSQL)."""
    metrics = DashboardMetrics()
    return metrics, start_exporting(
        settings, registry=metrics.registry, services=metrics.services, probe=("postgresql",)
    )
