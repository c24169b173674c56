"""What bench/pipeline.py and bench/soak.py share: a run's own topics, database and consumer group on the real
services, the worker processes (with CPU priority on a shared machine), the posts, and figures from the database.

Not a benchmark itself; nothing here asserts anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from kafka.admin import KafkaAdminClient, NewTopic
from PIL import Image
from sqlalchemy.engine import make_url

from carspot.pipeline.settings import Settings

CARSPOT = str(Path(sys.executable).with_name("carspot"))
AUTOGROUP_NICE = -15
"""The CPU weight a timed run asks for (Linux autogroup nice), so the machine's other users take less of it."""


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def balanced_post_id(i: int, *, partitions: int) -> str:
    """A post id whose Kafka key lands on partition ``i % partitions`` (kafka-python's murmur2 partitioner).

    Why: a few hundred hashed ids split unevenly (600 ids over 6 partitions: 77 to 114 each, so two workers
    holding three partitions each get 281 and 319 posts and the run ends when the larger share does, capping
    the measured speed-up at 1.88 whatever the workers do). At production volumes hashing evens out (1 % per
    partition at 100,000 posts); balanced ids measure that steady state in a short run."""
    from kafka.partitioner.default import murmur2

    for salt in range(10_000):
        post_id = f"bench-{i:05d}-{salt}"
        if (murmur2(post_id.encode()) & 0x7FFFFFFF) % partitions == i % partitions:
            return post_id
    raise RuntimeError(f"no id for post {i} lands on partition {i % partitions}")  # (1 - 1/p)^10000: never


def make_posts(folder: Path, scenes: Path, n: int, *, seed: int = 0, partitions: int | None = None) -> Path:
    """``n`` distinct pictures: random crops and rescales of the real scenes, as a JSONL source; with
    ``partitions``, ids spread evenly over that many partitions (`balanced_post_id`)."""
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(scenes.iterdir())]
    lines = []
    for i in range(n):
        scene = sources[i % len(sources)]
        w, h = scene.size
        box = (
            rng.randint(0, w // 8),
            rng.randint(0, h // 8),
            w - rng.randint(0, w // 8),
            h - rng.randint(0, h // 8),
        )
        crop = scene.crop(box)
        scale = rng.uniform(0.6, 1.0)
        crop = crop.resize((max(64, int(crop.width * scale)), max(64, int(crop.height * scale))))
        path = folder / f"{i:05d}.jpg"
        crop.save(path, quality=88)
        post_id = f"bench-{i:05d}" if partitions is None else balanced_post_id(i, partitions=partitions)
        lines.append(json.dumps({"post_id": post_id, "image": str(path), "author": "@bench"}))
    jsonl = folder / "posts.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    return jsonl


def raise_priority(pid: int) -> str:
    """Give ``pid``'s autogroup (its session) the weight of nice -15; returns what the kernel then reports."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        path.write_text(f"{AUTOGROUP_NICE}\n")
        return path.read_text().strip()
    except OSError as exc:  # not root, or a kernel without autogroup: the run goes on at normal priority
        return f"unchanged ({exc.strerror})"


@dataclass
class Run:
    """One run's own topic, dead-letter topic, database and consumer group, and the environment of its
    processes; ``close`` deletes them all."""

    settings: Settings
    partitions: int
    threads: int
    mode: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    posts_topic: str | None = None
    """Read this existing topic (a prefilled one, shared by runs) instead of a new one of the run's own."""
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        admin_url = self.settings.database_url.get_secret_value()
        if not admin_url.startswith("postgresql"):
            sys.exit("this benchmark needs the real services: run `carspot services up` first")
        self.topic = self.posts_topic or f"bench-{self.tag}.posts"
        self.dlq, self.group = f"bench-{self.tag}.dlq", f"bench-{self.tag}"
        self.admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        big = {"max.message.bytes": str(16 << 20)}
        new = [NewTopic(self.dlq, 1, 1, topic_configs=big)]
        if self.posts_topic is None:
            new.append(NewTopic(self.topic, self.partitions, 1, topic_configs=big))
        self.admin.create_topics(new)
        self.database = f"bench_{self.tag}"
        self._server_url = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(self._server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.db_url = make_url(admin_url).set(database=self.database).render_as_string(hide_password=False)
        s = self.settings
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")},
            "CARSPOT_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "CARSPOT_DATABASE_URL": self.db_url,
            "CARSPOT_REDIS_URL": s.redis_url.get_secret_value() if s.redis_url else "",
            "CARSPOT_REDIS_KEY_PREFIX": f"bench-{self.tag}:",
            "CARSPOT_POSTS_TOPIC": self.topic,
            "CARSPOT_DLQ_TOPIC": self.dlq,
            "CARSPOT_CONSUMER_GROUP": self.group,
            "CARSPOT_SHARED_DIR": str(s.shared_dir.resolve()),
            "CARSPOT_LOG_LEVEL": "WARNING",
            # The posts are crops of the same few scenes, which the perceptual hash rightly links as one
            # picture; the benchmark wants every post analysed.
            "CARSPOT_PHASH_DEDUP": "false",
            **({"CARSPOT_MODE": self.mode} if self.mode else {}),
            **(
                {"CARSPOT_CLASSIFIER_THREADS": str(self.threads), "CARSPOT_CV_THREADS": str(self.threads)}
                if self.threads
                else {}
            ),
            **self.extra_env,
        }
        subprocess.run([CARSPOT, "migrate"], env=self.env, check=True, capture_output=True)

    def start_workers(self, n: int, *, idle_timeout: float = 10, timeout: float = 3600) -> list[subprocess.Popen[str]]:
        """``n`` worker processes; each in its own session, whose autogroup gets the weight of nice -15."""
        workers = []
        for _ in range(n):
            worker = subprocess.Popen(
                [CARSPOT, "worker", "--idle-timeout", str(idle_timeout), "--timeout", str(timeout)],
                env=self.env,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            raise_priority(worker.pid)
            workers.append(worker)
        return workers

    def group_members(self) -> dict[str, list[int]]:
        """The consumer group's members (the end of their member id) and the partitions of the run's topic each
        holds (kafka-python 3.0's ``describe_groups``: plain dicts)."""
        group = self.admin.describe_groups([self.group])[self.group]
        if group["group_state"] != "Stable":
            return {}
        held: dict[str, list[int]] = {}
        for member in group["members"]:
            assigned = (member.get("member_assignment") or {}).get("assigned_partitions", [])
            partitions = [p for a in assigned if a["topic"] == self.topic for p in a["partitions"]]
            held[member["member_id"][-8:]] = sorted(partitions)
        return held

    def wait_for_members(self, n: int, *, timeout_s: float = 120) -> dict[str, list[int]]:
        """Wait (bounded) until the group is stable with ``n`` members sharing the topic's partitions evenly
        (a member's first assignment can be empty or lopsided while the leader lacks the topic's metadata);
        returns who holds what."""
        deadline = time.monotonic() + timeout_s
        held: dict[str, list[int]] = {}
        fair = {self.partitions // n, -(-self.partitions // n)}
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the group does not exist until its first member joins
                held = self.group_members()
                if (
                    len(held) == n
                    and sum(len(p) for p in held.values()) == self.partitions
                    and {len(p) for p in held.values()} <= fair
                ):
                    return held
            time.sleep(0.1)
        raise TimeoutError(f"{n} workers did not share the {self.partitions} partitions in {timeout_s} s: {held}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.delete_topics([self.dlq] if self.posts_topic else [self.topic, self.dlq])
        self.admin.close()
        with contextlib.suppress(Exception), psycopg.connect(self._server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


@dataclass
class Samples:
    """The workers watched while they ran: peak RSS, and (wall time, CPU seconds of all of them) over time."""

    peak_rss: int = 0
    cpu: list[tuple[float, float]] = field(default_factory=list)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the workers used between two wall-clock times (epoch seconds), from the samples."""
        inside = [c for t, c in self.cpu if start <= t <= end]
        return inside[-1] - inside[0] if len(inside) > 1 else 0.0


def wait_sampling(workers: list[subprocess.Popen[str]], *, every_s: float = 0.2) -> Samples:
    """Wait for the workers to exit, sampling their RSS and CPU time."""
    procs = [psutil.Process(w.pid) for w in workers]
    samples = Samples()
    cpu = [0.0] * len(procs)
    while any(w.poll() is None for w in workers):
        for i, proc in enumerate(procs):
            with contextlib.suppress(psutil.NoSuchProcess):
                samples.peak_rss = max(samples.peak_rss, proc.memory_info().rss)
                times = proc.cpu_times()
                cpu[i] = times.user + times.system
        samples.cpu.append((time.time(), sum(cpu)))
        time.sleep(every_s)
    return samples


def worker_stats(workers: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    return [json.loads(w.stdout.read()) for w in workers if w.stdout]
