"""The /metrics endpoint: off by default, PORT + INDEX for several processes of one host, a taken port refused,
and the service probe behind ``carspot_service_up``."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from carspot.infra.ports import pick_free_port
from carspot.pipeline.metrics import (
    IngestMetrics,
    MetricsPortTaken,
    ServiceGauge,
    ServiceProbe,
    WorkerMetrics,
    metrics_port,
    serve_metrics,
    service_addresses,
    start_exporting,
    tcp_reachable,
)
from carspot.pipeline.settings import Settings


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def free_pair() -> int:
    """A port whose successor is free too."""
    for _ in range(50):
        port = pick_free_port()
        if port < 65535 and _free(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_port_rule_is_base_plus_index() -> None:
    assert metrics_port(base=9400, index=0) == 9400
    assert metrics_port(base=9400, index=3) == 9403
    with pytest.raises(ValueError):
        metrics_port(base=65535, index=1)


def test_metrics_are_off_unless_a_port_is_set() -> None:
    metrics = WorkerMetrics()
    assert start_exporting(Settings(), registry=metrics.registry, services=metrics.services, probe=()) is None


def test_two_workers_of_one_host_export_on_consecutive_ports_each_its_own_registry() -> None:
    base = free_pair()
    first, second = WorkerMetrics(), WorkerMetrics()
    first.read(3)
    second.read(5)
    exports = [
        start_exporting(
            Settings(metrics_port=base, metrics_index=index, kafka_bootstrap=f"127.0.0.1:{pick_free_port()}"),
            registry=m.registry,
            services=m.services,
            probe=("kafka",),
        )
        for index, m in enumerate((first, second))
    ]
    try:
        assert "carspot_worker_messages_read_total 3.0" in scrape(base)
        assert "carspot_worker_messages_read_total 5.0" in scrape(base + 1)
        assert 'carspot_service_up{service="kafka"} 0.0' in scrape(base)  # nothing listens there
    finally:
        for exporting in exports:
            assert exporting is not None
            exporting.close()


def test_a_taken_port_is_refused_at_start_up_with_the_rule_in_the_message() -> None:
    port = pick_free_port()
    server = serve_metrics(CollectorRegistry(), host="127.0.0.1", port=port)
    try:
        with pytest.raises(MetricsPortTaken, match="CARSPOT_METRICS_INDEX"):
            serve_metrics(CollectorRegistry(), host="127.0.0.1", port=port)
    finally:
        server.close()


def test_ingest_metrics_accept_only_the_ingest_paths_as_source() -> None:
    for source in ("folder", "jsonl", "x", "http"):
        IngestMetrics(source=source)
    with pytest.raises(ValueError):
        IngestMetrics(source="jsonl:/some/file.jsonl")


def test_the_probe_sets_each_service_up_or_down() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        assert tcp_reachable([("127.0.0.1", open_port)])
        registry = CollectorRegistry()
        probe = ServiceProbe(
            ServiceGauge(registry),
            {"kafka": lambda: tcp_reachable([("127.0.0.1", open_port)]), "redis": lambda: 1 / 0 > 0},
        )
        probe.probe_once()
    assert registry.get_sample_value("carspot_service_up", {"service": "kafka"}) == 1
    assert registry.get_sample_value("carspot_service_up", {"service": "redis"}) == 0  # a failing probe is down


def test_service_addresses_come_from_the_settings_urls() -> None:
    found = service_addresses(
        kafka_bootstrap="127.0.0.1:9092,127.0.0.2:9093",
        database_url="postgresql+psycopg://carspot:secret@127.0.0.1:5544/carspot",
        redis_url="redis://127.0.0.1:6380/0",
    )
    assert found == {
        "kafka": [("127.0.0.1", 9092), ("127.0.0.2", 9093)],
        "postgresql": [("127.0.0.1", 5544)],
        "redis": [("127.0.0.1", 6380)],
    }
    assert "postgresql" not in service_addresses(database_url="sqlite:///x.db")
