"""Peak RSS of the ingest push endpoint and of the dashboard while they serve, for the Kubernetes requests
(docs/kubernetes.md). Needs `carspot services up`; uses its own topics and database, loopback only.

Starts `carspot ingest http` and `carspot dashboard` on free loopback ports, pushes N real pictures (the shared
scenes, multipart) and reads the dashboard's pages and JSON API N times, sampling each process's RSS with psutil
every 0.1 s; prints the peaks. Asserts nothing.

    .venv/bin/python bench/service_rss.py --requests 200
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg
from kafka.admin import KafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from carspot.pipeline.settings import Settings

CARSPOT = str(Path(sys.executable).with_name("carspot"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PeakRss:
    """Samples a process's RSS in a thread until stopped; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def wait_healthy(url: str, *, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer 200 within {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="pushes, and dashboard reads (each)")
    args = parser.parse_args()
    settings = Settings.load()
    admin_url = settings.database_url.get_secret_value()
    if not admin_url.startswith("postgresql"):
        sys.exit("bench/service_rss.py needs the real services: run `carspot services up` first")
    tag = uuid.uuid4().hex[:8]
    topic, dlq, database = f"rss-{tag}.posts", f"rss-{tag}.dlq", f"rss_{tag}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    big = {"max.message.bytes": str(16 << 20)}
    admin.create_topics([NewTopic(topic, 6, 1, topic_configs=big), NewTopic(dlq, 1, 1, topic_configs=big)])
    libpq = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    token = uuid.uuid4().hex
    ingest_port, dashboard_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")},
        "CARSPOT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CARSPOT_DATABASE_URL": make_url(admin_url).set(database=database).render_as_string(hide_password=False),
        "CARSPOT_REDIS_URL": settings.redis_url.get_secret_value() if settings.redis_url else "",
        "CARSPOT_REDIS_KEY_PREFIX": f"rss-{tag}:",
        "CARSPOT_POSTS_TOPIC": topic,
        "CARSPOT_DLQ_TOPIC": dlq,
        "CARSPOT_HTTP_PUSH_TOKEN": token,
        "CARSPOT_LOG_LEVEL": "WARNING",
        "CARSPOT_PHASH_DEDUP": "false",
    }
    scenes = sorted((settings.shared_dir / "data" / "scenes").iterdir())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([CARSPOT, "migrate"], env=env, check=True, capture_output=True)
        password = uuid.uuid4().hex  # the dashboard's reads are a signed-in viewer's (an anonymous one is refused)
        subprocess.run(
            [CARSPOT, "users", "add", "bench", "--role", "viewer", "--password-stdin"],
            env=env,
            check=True,
            capture_output=True,
            input=password.encode(),
        )
        ingest = subprocess.Popen(
            [CARSPOT, "ingest", "http", "--host", "127.0.0.1", "--port", str(ingest_port)], env=env
        )
        dashboard = subprocess.Popen(
            [CARSPOT, "dashboard", "--host", "127.0.0.1", "--port", str(dashboard_port)], env=env
        )
        procs = [ingest, dashboard]
        wait_healthy(f"http://127.0.0.1:{ingest_port}/healthz")
        wait_healthy(f"http://127.0.0.1:{dashboard_port}/healthz")
        ingest_rss, dashboard_rss = PeakRss(ingest.pid), PeakRss(dashboard.pid)
        accepted = read_ok = 0
        with httpx.Client(timeout=60) as client:
            for i in range(args.requests):
                scene = scenes[i % len(scenes)]
                pushed = client.post(
                    f"http://127.0.0.1:{ingest_port}/v1/posts",
                    headers={"Authorization": f"Bearer {token}"},
                    data={"post_id": f"rss-{i}", "author": "@bench"},
                    files={"image": (scene.name, scene.read_bytes())},
                )
                accepted += pushed.status_code == 202
            base = f"http://127.0.0.1:{dashboard_port}"
            form = client.get(f"{base}/login").text
            csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed = client.post(f"{base}/login", data={"name": "bench", "password": password, "csrf_token": csrf})
            if signed.status_code != 303:
                raise SystemExit(f"could not sign in to the dashboard: HTTP {signed.status_code}")
            for i in range(args.requests):
                path = ("/", "/api/summary", "/api/brand-share", "/api/daily", "/api/recent")[i % 5]
                read_ok += client.get(f"{base}{path}").status_code == 200
        peaks = {"ingest http": ingest_rss.stop(), "dashboard": dashboard_rss.stop()}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        admin.delete_topics([topic, dlq])
        admin.close()
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(f"pushes {args.requests} ({accepted} accepted) · dashboard reads {args.requests} ({read_ok} answered 200)")
    for name, peak in peaks.items():
        print(f"{name:<12} peak RSS {peak / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
