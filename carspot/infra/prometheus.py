"""Prometheus from Debian's ``prometheus`` package (with ``promtool``), on loopback, for dev and the tests.

``carspot services up`` installs the package when it is missing (the tests scrape real workers with it and
check the alert rules with ``promtool``); :func:`start` runs a server with its own config and data directory
on a free loopback port, scraping the targets it is given, and :func:`query` reads series back through its
HTTP API.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carspot.infra.errors import ServiceStartError
from carspot.infra.install import require_binary
from carspot.infra.ports import LOOPBACK, pick_free_port
from carspot.infra.procs import terminate

log = logging.getLogger(__name__)

SERVICE = "prometheus"
PACKAGE = "prometheus"


@dataclass(frozen=True)
class Binaries:
    prometheus: str
    promtool: str


def binaries(*, install: bool) -> Binaries:
    """``prometheus`` and ``promtool``, apt-installing Debian's package first when missing and allowed."""
    return Binaries(
        prometheus=require_binary("prometheus", package=PACKAGE, service=SERVICE, install=install),
        promtool=require_binary("promtool", package=PACKAGE, service=SERVICE, install=install),
    )


def scrape_config(
    targets: Mapping[str, Sequence[str]], *, interval_s: float = 15.0, rule_files: Sequence[Path] = ()
) -> str:
    """A prometheus.yml scraping each job's ``host:port`` targets (JSON is valid YAML: no YAML library)."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": f"{interval_s:g}s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]} for job, addresses in targets.items()
        ],
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass
class Running:
    """A Prometheus server this process started; ``close`` stops it."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def close(self) -> None:
        if self.process.poll() is None:
            terminate(self.process.pid, grace_s=10.0)
        self.process.wait(timeout=15)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start(
    prometheus_binary: str,
    *,
    home: Path,
    targets: Mapping[str, Sequence[str]],
    interval_s: float = 1.0,
    rule_files: Sequence[Path] = (),
    port: int | None = None,
    timeout_s: float = 30.0,
) -> Running:
    """Start Prometheus on ``127.0.0.1:port`` (a free one by default) with config and data under ``home``, and
    wait (bounded) until it is ready. ServiceStartError with its log tail if it exits or never gets ready."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(scrape_config(targets, interval_s=interval_s, rule_files=rule_files), encoding="utf-8")
    port = port or pick_free_port()
    log_path = home / "prometheus.log"
    argv = [
        prometheus_binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--storage.tsdb.retention.time=1d",
    ]
    with log_path.open("ab") as out:
        process = subprocess.Popen(argv, cwd=home, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    running = Running(url=f"http://{LOOPBACK}:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise ServiceStartError(SERVICE, f"prometheus exited with code {process.returncode}", logs=[log_path])
        if _ready(running.url):
            log.info("prometheus ready at %s (pid %s)", running.url, process.pid)
            return running
        if time.monotonic() >= deadline:
            running.close()
            raise ServiceStartError(SERVICE, f"not ready after {timeout_s:.0f}s", logs=[log_path])
        time.sleep(0.2)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:  # a loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False


def query(url: str, promql: str, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The result vector of an instant query through the HTTP API (``/api/v1/query``)."""
    address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(address, timeout=timeout_s) as response:  # a loopback URL we built
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus query {promql!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
