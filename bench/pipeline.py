"""End-to-end benchmark: N posts through ingest → Kafka → worker(s) → PostgreSQL, on the real services.

Prints images/s, ingest-to-stored latency (p50/p95, from the database's own timestamps), time per worker
stage and the workers' peak RSS. Needs `carspot services up`. Asserts nothing.

    .venv/bin/python bench/pipeline.py --posts 1000 --workers 1 [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
from kafka.admin import KafkaAdminClient, NewTopic
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from carspot.pipeline.settings import Settings

CARSPOT = str(Path(sys.executable).with_name("carspot"))


def make_posts(folder: Path, scenes: Path, n: int, *, seed: int = 0) -> Path:
    """``n`` distinct pictures: random crops and rescales of the real scenes, as a JSONL source."""
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
        lines.append(json.dumps({"post_id": f"bench-{i:05d}", "image": str(path), "author": "@bench"}))
    jsonl = folder / "posts.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    return jsonl


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--threads", type=int, default=0, help="LiteRT and OpenCV threads per worker (default: the settings')"
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()

    settings = Settings.load()
    admin_url = settings.database_url.get_secret_value()
    if not admin_url.startswith("postgresql"):
        sys.exit("bench/pipeline.py needs the real services: run `carspot services up` first")
    tag = uuid.uuid4().hex[:8]
    topic, dlq = f"bench-{tag}.posts", f"bench-{tag}.dlq"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    big = {"max.message.bytes": str(16 << 20)}
    admin.create_topics(
        [NewTopic(topic, args.partitions, 1, topic_configs=big), NewTopic(dlq, 1, 1, topic_configs=big)]
    )
    database = f"bench_{tag}"
    with psycopg.connect(
        make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    ) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    db_url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")},
        "CARSPOT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CARSPOT_DATABASE_URL": db_url,
        "CARSPOT_REDIS_URL": settings.redis_url.get_secret_value() if settings.redis_url else "",
        "CARSPOT_REDIS_KEY_PREFIX": f"bench-{tag}:",
        "CARSPOT_POSTS_TOPIC": topic,
        "CARSPOT_DLQ_TOPIC": dlq,
        "CARSPOT_SHARED_DIR": str(settings.shared_dir.resolve()),
        "CARSPOT_LOG_LEVEL": "WARNING",
        # The posts are crops of the same few scenes, which the perceptual hash rightly links as one picture;
        # the benchmark wants every post analysed.
        "CARSPOT_PHASH_DEDUP": "false",
        **(
            {"CARSPOT_CLASSIFIER_THREADS": str(args.threads), "CARSPOT_CV_THREADS": str(args.threads)}
            if args.threads
            else {}
        ),
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            jsonl = make_posts(Path(tmp), settings.shared_dir / "data" / "scenes", args.posts)
            subprocess.run([CARSPOT, "migrate"], env=env, check=True, capture_output=True)
            workers = [
                subprocess.Popen(
                    [CARSPOT, "worker", "--idle-timeout", "10", "--timeout", "1800"],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(args.workers)
            ]
            time.sleep(3)  # let them join the group
            started = time.monotonic()
            ingest = subprocess.run(
                [CARSPOT, "ingest", f"jsonl:{jsonl}"], env=env, check=True, capture_output=True, text=True
            )
            ingest_seconds = time.monotonic() - started
            peak_rss = 0
            procs = [psutil.Process(w.pid) for w in workers]
            while any(w.poll() is None for w in workers):
                for proc in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        peak_rss = max(peak_rss, proc.memory_info().rss)
                time.sleep(0.2)
            stats = [json.loads(w.stdout.read()) for w in workers if w.stdout]
        figures = collect(
            db_url,
            stats,
            args,
            ingest_seconds=ingest_seconds,
            peak_rss=peak_rss,
            ingest=json.loads(ingest.stdout),
        )
    finally:
        admin.delete_topics([topic, dlq])
        admin.close()
    report(figures, as_json=args.json)


def collect(
    db_url: str,
    stats: list[dict[str, Any]],
    args: argparse.Namespace,
    *,
    ingest_seconds: float,
    peak_rss: int,
    ingest: dict[str, Any],
) -> dict[str, Any]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT EXTRACT(EPOCH FROM p.ingested_at), EXTRACT(EPOCH FROM p.stored_at) FROM posts p")
        ).all()
        analyses = conn.execute(text("SELECT count(*) FROM analyses")).scalar_one()
        cars = conn.execute(text("SELECT count(*) FROM regions")).scalar_one()
    engine.dispose()
    latencies = [float(s) - float(i) for i, s in rows]
    first, last = min(float(i) for i, _ in rows), max(float(s) for _, s in rows)
    stages: dict[str, float] = {}
    messages = sum(s["messages"] for s in stats)
    for s in stats:
        for stage, seconds in s["seconds"].items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    return {
        "posts": args.posts,
        "workers": args.workers,
        "threads_per_worker": args.threads or Settings.model_fields["classifier_threads"].default,
        "partitions": args.partitions,
        "stored_posts": len(rows),
        "analyses": analyses,
        "cars": cars,
        "ingest_posts_per_s": round(args.posts / ingest_seconds, 1),
        "images_per_s": round(len(rows) / (last - first), 2),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "stage_ms_per_image": {k: round(1000 * v / max(messages, 1), 2) for k, v in stages.items()},
        "worker_peak_rss_mb": round(peak_rss / 2**20, 1),
        "dead_letters": ingest.get("rejected", {}),
    }


def report(figures: dict[str, Any], *, as_json: bool) -> None:
    print(
        f"posts {figures['posts']} · workers {figures['workers']} × {figures['threads_per_worker']} threads"
        f" · partitions {figures['partitions']}"
    )
    print(f"stored posts       {figures['stored_posts']}  (analyses {figures['analyses']}, cars {figures['cars']})")
    print(f"ingest             {figures['ingest_posts_per_s']} posts/s")
    print(f"end to end         {figures['images_per_s']} images/s")
    print(f"ingest→stored      p50 {figures['latency_p50_s']} s · p95 {figures['latency_p95_s']} s")
    print("worker stages      " + " · ".join(f"{k} {v} ms" for k, v in figures["stage_ms_per_image"].items()))
    print(f"worker peak RSS    {figures['worker_peak_rss_mb']} MB")
    if as_json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
