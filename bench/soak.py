"""Soak: workers under a steady load for a long while, on the real services; does anything drift?

A paced producer (bounded in count and time, loopback only) sends posts at ``--load`` (default 80 %) of a
measured capacity (``--capacity``, images/s of all the workers together, from ``bench/pipeline.py --prefill``)
while ``--workers`` worker processes consume them. Every picture is distinct: a pool of real scenes' crops,
normalised once as ingest would, each sent with its own JPEG comment so its sha256 differs (the worker analyses
it in full, it is no re-post). ``ingested_at`` is the moment of sending.

Each minute it prints: posts sent and stored, consumer lag (end offsets - committed offsets of the group), the
workers' RSS, and the p50 / p95 ingest→stored latency of the posts stored that minute (the database's
``stored_at``). At the end: the slopes after the warm-up (lag per minute, RSS % per minute) and whether the
targets hold: lag bounded, RSS growth < 5 % after warm-up, p95 <= 2 s. Needs `carspot services up`. Asserts
nothing (it prints the verdicts).

    .venv/bin/python bench/soak.py --minutes 20 --capacity 18 [--workers 2] [--threads 1] [--json]
    .venv/bin/python bench/soak.py --minutes 3 --warmup 1 --capacity 18      # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import signal
import statistics
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from harness import Run, make_posts, percentile, worker_stats
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import create_engine, text

from carspot.ingest.images import NormalizedImage
from carspot.pipeline.app import make_normalizer
from carspot.pipeline.kafka_io import make_producer
from carspot.pipeline.message import Post
from carspot.pipeline.settings import Settings

RSS_GROWTH_LIMIT = 0.05
P95_LIMIT_S = 2.0


def with_comment(jpeg: bytes, comment: bytes) -> bytes:
    """The same picture with a JPEG COM segment right after SOI: other bytes, so another sha256."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def pictures(settings: Settings, count: int) -> list[NormalizedImage]:
    """``count`` distinct real pictures, normalised once as ingest would."""
    normalize = make_normalizer(settings)
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = make_posts(Path(tmp), settings.shared_dir / "data" / "scenes", count, seed=1)
        return [normalize(Path(json.loads(line)["image"]).read_bytes()) for line in jsonl.read_text().splitlines()]


class PacedProducer(threading.Thread):
    """Sends ``rate`` posts a second until ``until`` (monotonic) or ``stop``; at most ``rate`` x duration."""

    def __init__(self, *, settings: Settings, topic: str, pool: list[NormalizedImage], rate: float, until: float):
        super().__init__(daemon=True)
        self._producer = make_producer(
            bootstrap=settings.kafka_bootstrap,
            max_message_bytes=settings.kafka_max_message_bytes,
            compression=settings.kafka_compression,
        )
        self._topic, self._pool, self._rate, self._until = topic, pool, rate, until
        self._tag = f"{time.time_ns():x}"[-8:]
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        limit = int(self._rate * (self._until - started)) + 1
        try:
            while not self.stop.is_set() and self.sent < limit:
                due = started + self.sent / self._rate
                now = time.monotonic()
                if due > now:
                    self.stop.wait(due - now)
                    continue
                if now >= self._until:
                    break
                base = self._pool[self.sent % len(self._pool)]
                jpeg = with_comment(base.jpeg, f"soak {self._tag} {self.sent}".encode())
                post = Post(
                    post_id=f"soak-{self._tag}-{self.sent:07d}",
                    source="bench",
                    ingested_at=datetime.now(UTC),
                    image_sha256=hashlib.sha256(jpeg).hexdigest(),
                    width=base.width,
                    height=base.height,
                    image=jpeg,
                )
                self._producer.send(self._topic, key=post.post_id.encode(), value=post.encode())
                self.sent += 1
        finally:
            self._producer.flush(timeout=30)
            self._producer.close(timeout=10)


@dataclass
class Minute:
    minute: int
    sent: int
    stored: int
    lag: int
    rss_mb: list[float]
    p50_s: float | None
    p95_s: float | None


def lag_of(consumer: KafkaConsumer, admin: Any, *, topic: str, group: str, partitions: int) -> int:
    """Messages in the topic the group has not committed yet, over all partitions."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = consumer.end_offsets(tps)
    committed = admin.list_group_offsets(group).get(group, {})
    return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)


def latencies(engine: Any, *, since: float, until: float) -> list[float]:
    """ingest→stored seconds of the posts stored in [since, until) (epoch seconds)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM stored_at - ingested_at) FROM posts"
                " WHERE stored_at >= to_timestamp(:a) AND stored_at < to_timestamp(:b)"
            ),
            {"a": since, "b": until},
        ).all()
    return [float(r[0]) for r in rows]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope


def verdicts(
    minutes: list[Minute], stored_latencies: list[list[float]], *, warmup: int, rate: float, batch: int, workers: int
) -> dict[str, Any]:
    """The slopes after the warm-up and whether the targets hold.

    Lag bounded: after the warm-up it grows by less than 1 % of a minute's posts per minute, or it never
    exceeds what the workers hold in flight (a batch each, twice). RSS: the mean worker RSS of the last
    minute against the first minute after the warm-up, < 5 %. p95: of every post stored after the warm-up
    (``stored_latencies``: per minute, in order)."""
    after = [m for m in minutes if m.minute > warmup] or minutes[-1:]
    lag_slope = slope([(m.minute, m.lag) for m in after])
    in_flight = 2 * batch * workers
    lag_bounded = lag_slope < 0.01 * rate * 60 or max(m.lag for m in after) <= in_flight
    rss = [(m.minute, statistics.fmean(m.rss_mb)) for m in after if m.rss_mb]
    base = rss[0][1] if rss else 0.0
    rss_growth = (rss[-1][1] - base) / base if base else 0.0
    rss_slope_pct = 100 * slope(rss) / base if base else 0.0
    p95s = [m.p95_s for m in after if m.p95_s is not None]
    pooled = [s for m, lat in zip(minutes, stored_latencies, strict=True) if m in after for s in lat]
    p95 = round(percentile(pooled, 95), 2) if pooled else None
    return {
        "warmup_minutes": warmup,
        "lag_slope_per_min": round(lag_slope, 2),
        "lag_max_after_warmup": max(m.lag for m in after),
        "lag_bounded": bool(lag_bounded),
        "rss_slope_pct_per_min": round(rss_slope_pct, 3),
        "rss_growth_pct": round(100 * rss_growth, 2),
        "rss_ok": rss_growth < RSS_GROWTH_LIMIT,
        "p95_s": p95,
        "p95_worst_minute_s": max(p95s) if p95s else None,
        "p95_ok": p95 is not None and p95 <= P95_LIMIT_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=None, help="minutes left out of the slopes (5, or 1 if short)")
    parser.add_argument("--capacity", type=float, required=True, help="measured images/s of all the workers")
    parser.add_argument("--load", type=float, default=0.8, help="share of the capacity to send")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="classifier/detector and OpenCV threads per worker")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--pool", type=int, default=120, help="distinct base pictures")
    parser.add_argument("--env", type=lambda kv: tuple(kv.split("=", 1)), action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.minutes <= 240:
        parser.error("--minutes must be between 1 and 240")
    warmup = args.warmup if args.warmup is not None else (5 if args.minutes >= 10 else 1)
    rate = args.load * args.capacity

    settings = Settings.load()
    pool = pictures(settings, args.pool)
    run = Run(
        settings=settings,
        partitions=args.partitions,
        threads=args.threads,
        extra_env={"CARSPOT_LOG_LEVEL": "ERROR", **dict(args.env)},
    )
    batch = int(dict(args.env).get("CARSPOT_BATCH_MAX_MESSAGES", settings.batch_max_messages))
    engine = create_engine(run.db_url)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    workers = []
    try:
        workers = run.start_workers(args.workers, idle_timeout=3600, timeout=args.minutes * 60 + 600)
        held = run.wait_for_members(args.workers)
        print(
            f"soak · {args.minutes} min · {args.workers} workers × {args.threads} thread(s) · partitions"
            f" {args.partitions} (held {sorted(len(p) for p in held.values())}) · sending {rate:.2f} posts/s"
            f" ({100 * args.load:.0f} % of {args.capacity} images/s)",
            flush=True,
        )
        print("minute  sent  stored  lag  RSS MB (per worker)  p50 s  p95 s", flush=True)
        procs = [psutil.Process(w.pid) for w in workers]
        start_wall, start = time.time(), time.monotonic()
        producer = PacedProducer(
            settings=settings, topic=run.topic, pool=pool, rate=rate, until=start + 60 * args.minutes
        )
        producer.start()
        minutes: list[Minute] = []
        stored_latencies: list[list[float]] = []
        stored_before = 0
        for m in range(1, args.minutes + 1):
            time.sleep(max(0.0, start + 60 * m - time.monotonic()))
            now_wall = time.time()
            lat = latencies(engine, since=start_wall + 60 * (m - 1), until=now_wall)
            rss = []
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss.append(round(proc.memory_info().rss / 2**20, 1))
            minute = Minute(
                minute=m,
                sent=producer.sent,
                stored=stored_before + len(lat),
                lag=lag_of(consumer, run.admin, topic=run.topic, group=run.group, partitions=args.partitions),
                rss_mb=rss,
                p50_s=round(percentile(lat, 50), 2) if lat else None,
                p95_s=round(percentile(lat, 95), 2) if lat else None,
            )
            stored_before = minute.stored
            minutes.append(minute)
            stored_latencies.append(lat)
            print(
                f"{m:>6}  {minute.sent:>5}  {minute.stored:>6}  {minute.lag:>4}  {' '.join(map(str, rss)):>19}"
                f"  {minute.p50_s}  {minute.p95_s}",
                flush=True,
            )
        producer.stop.set()
        producer.join(timeout=60)
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                w.send_signal(signal.SIGTERM)
        for w in workers:
            with contextlib.suppress(Exception):
                w.wait(timeout=60)
        stats = worker_stats(workers) if workers and all(w.returncode == 0 for w in workers) else []
        consumer.close()
        engine.dispose()
        run.close()
    result = verdicts(minutes, stored_latencies, warmup=warmup, rate=rate, batch=batch, workers=args.workers)
    dead = sum(sum(s["dead_letters"].values()) for s in stats)
    yes = {True: "yes", False: "NO"}
    print(f"after a {warmup}-minute warm-up:")
    print(
        f"  lag      slope {result['lag_slope_per_min']} posts/min, max {result['lag_max_after_warmup']}"
        f" → bounded: {yes[result['lag_bounded']]}"
    )
    print(
        f"  RSS      slope {result['rss_slope_pct_per_min']} %/min, growth {result['rss_growth_pct']} %"
        f" → < 5 %: {yes[result['rss_ok']]}"
    )
    print(
        f"  p95      {result['p95_s']} s (worst minute {result['p95_worst_minute_s']} s)"
        f" → ≤ {P95_LIMIT_S} s: {yes[result['p95_ok']]}"
    )
    analyses, batches = sum(s["analyses"] for s in stats), sum(s["batches"] for s in stats)
    print(f"  dead letters {dead}, analyses {analyses}, batches {batches}")
    if args.json:
        print(json.dumps({"minutes": [m.__dict__ for m in minutes], **result, "rate": rate}))


if __name__ == "__main__":
    main()
