"""Prometheus scrapes a running worker and the HTTP push ingest on the real services, and the carspot_* series
read back through its HTTP API say what happened: posts pushed, pictures analysed, latencies, lag, the model in
use, the services reachable. Prometheus is Debian's package, started here on loopback with its own config and
data, with the shipped alert rules loaded."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carspot.classifier.registry import current_version
from carspot.infra import prometheus
from carspot.infra.ports import pick_free_port
from tests.integration.conftest import Isolated
from tests.integration.support import CARSPOT, carspot
from tests.integration.test_push_ingest import TOKEN, wait_healthy

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
PICTURES = ("dog.jpg", "bus.jpg", "street-000004.jpg", "times-square.png")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The carspot processes a test starts; stopped (SIGTERM, then SIGKILL) whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start(args: list[str], *, env: dict[str, str], log: Path, into: list[subprocess.Popen[bytes]]) -> None:
    with log.open("wb") as handle:
        into.append(subprocess.Popen([CARSPOT, *args], env=env, stdout=handle, stderr=subprocess.STDOUT))


def wait_for(what: str, check: Callable[[], Any], *, timeout_s: float, logs: list[Path]) -> Any:
    """``check()`` until it returns something truthy; bounded, failing with the processes' log tails."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name} ---\n{log.read_text(errors='replace')[-2000:]}" for log in logs)
    raise AssertionError(f"{what}: not after {timeout_s:.0f} s\n{tails}")


def value(url: str, promql: str) -> float | None:
    """The value of a query that yields one sample (None while there is none)."""
    result = prometheus.query(url, promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_prometheus_reads_carspot_series_from_a_running_worker_and_ingest(
    isolated: Isolated, scenes_dir: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    binaries = prometheus.binaries(install=False)  # `carspot services up` installed it; missing fails here
    worker_port, ingest_port, push_port = pick_free_port(), pick_free_port(), pick_free_port()
    common = {"CARSPOT_HTTP_PUSH_TOKEN": TOKEN, "CARSPOT_METRICS_PROBE_INTERVAL_S": "1"}
    env = isolated.env(**common)
    carspot("migrate", env=env)
    logs = [tmp_path / "worker.log", tmp_path / "push.log"]
    start(
        ["worker", "--timeout", "300"],
        env=isolated.env(**common, CARSPOT_METRICS_PORT=str(worker_port)),
        log=logs[0],
        into=processes,
    )
    start(
        ["ingest", "http", "--host", "127.0.0.1", "--port", str(push_port)],
        env=isolated.env(**common, CARSPOT_METRICS_PORT=str(ingest_port)),
        log=logs[1],
        into=processes,
    )
    targets = {"carspot-worker": [f"127.0.0.1:{worker_port}"], "carspot-ingest": [f"127.0.0.1:{ingest_port}"]}
    with prometheus.start(
        binaries.prometheus, home=tmp_path / "prometheus", targets=targets, interval_s=1.0, rule_files=[ALERTS]
    ) as server:
        url = server.url
        base = f"http://127.0.0.1:{push_port}"
        wait_healthy(base, processes[1], logs[1])
        before = wait_for(
            "the worker's model version, before any picture",
            lambda: prometheus.query(url, "carspot_worker_model_info"),
            timeout_s=180,
            logs=logs,
        )
        assert [m["metric"]["version"] for m in before] == [current_version(REPO / "models")]
        assert value(url, "sum(carspot_worker_messages_read_total)") in (None, 0.0)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for n, name in enumerate(PICTURES):
            files = {"image": (name, (scenes_dir / name).read_bytes(), "application/octet-stream")}
            answer = httpx.post(f"{base}/v1/posts", data={"post_id": f"m{n}"}, files=files, headers=auth, timeout=30)
            assert answer.status_code == 202, answer.text
        bad = {"image": ("notes.jpg", b"just text, not a picture", "image/jpeg")}
        assert httpx.post(f"{base}/v1/posts", data={"post_id": "m-bad"}, files=bad, headers=auth, timeout=30).is_error

        analysed = "sum(carspot_worker_messages_analysed_total)"
        done = wait_for(
            "pictures analysed, as Prometheus sees it",
            lambda: (value(url, analysed) or 0) >= len(PICTURES),
            timeout_s=240,
            logs=logs,
        )
        assert done
        assert value(url, 'up{job="carspot-worker"}') == 1 and value(url, 'up{job="carspot-ingest"}') == 1
        assert value(url, 'sum(carspot_ingest_posts_seen_total{source="http"})') == len(PICTURES) + 1
        assert value(url, 'sum(carspot_ingest_posts_emitted_total{kind="picture"})') == len(PICTURES)
        assert value(url, 'sum(carspot_ingest_posts_rejected_total{reason="not_an_image"})') == 1
        assert value(url, "sum(carspot_worker_messages_read_total)") == len(PICTURES)
        assert value(url, "sum(carspot_worker_ingest_to_stored_seconds_count)") == len(PICTURES)
        assert (value(url, "sum(carspot_worker_ingest_to_stored_seconds_sum)") or 0) > 0
        assert (value(url, 'sum(carspot_worker_stage_duration_seconds_count{stage="analyse"})') or 0) >= 1
        assert (value(url, "max(carspot_worker_last_write_timestamp_seconds)") or 0) > time.time() - 600
        model = prometheus.query(url, "carspot_worker_model_info")
        assert [m["metric"]["version"] for m in model] == [current_version(REPO / "models")]
        lag = prometheus.query(url, "carspot_worker_consumer_lag_messages")
        assert {int(m["metric"]["partition"]) for m in lag} <= set(range(6)) and lag, "lag per owned partition"
        probed = (("carspot-worker", "kafka"), ("carspot-worker", "postgresql"), ("carspot-ingest", "redis"))
        for job, service in probed:
            assert value(url, f'carspot_service_up{{job="{job}", service="{service}"}}') == 1, (job, service)
        rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert sum(len(group["rules"]) for group in rules) == 7, "the shipped alert rules load"
