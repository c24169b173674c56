"""Running the real CLI against the real services, and reading back what it left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text

from carspot.pipeline.deadletter import DeadLetter

CARSPOT = str(Path(sys.executable).with_name("carspot"))


def carspot(*args: str, env: dict[str, str], timeout: float = 300) -> Any:
    """Run ``carspot ARGS``; fail with its stderr when it fails; return its JSON output."""
    done = subprocess.run([CARSPOT, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"carspot {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout


def start_carspot(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([CARSPOT, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every committed record of ``topic`` from the beginning to the current end (no consumer group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=32 << 20,
        isolation_level="read_committed",  # the worker's dead letters are transactional: aborted ones do not count
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, bytes]] = []
        for _ in range(200):  # bounded
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.key, r.value) for r in batch)
        return records
    finally:
        consumer.close()


def dead_letters(bootstrap: str, topic: str) -> list[DeadLetter]:
    return [DeadLetter.decode(value) for _key, value in read_topic(bootstrap, topic)]


SNAPSHOT_QUERIES = {
    "posts": "SELECT post_id, source, author, image_sha256 FROM posts ORDER BY post_id",
    "images": "SELECT sha256, width, height FROM images ORDER BY sha256",
    "analyses": """SELECT image_sha256, mode, detector, model_version, region_count FROM analyses
                   ORDER BY image_sha256, mode, model_version""",
    "regions": """SELECT a.image_sha256, r.region_index, round(CAST(r.x1 AS numeric), 2),
                         round(CAST(r.y1 AS numeric), 2), round(CAST(r.x2 AS numeric), 2),
                         round(CAST(r.y2 AS numeric), 2), round(CAST(r.score AS numeric), 4), r.label
                  FROM regions r JOIN analyses a ON a.id = r.analysis_id
                  ORDER BY a.image_sha256, r.region_index""",
    "brands": """SELECT a.image_sha256, b.region_index, b.rank, b.make, round(CAST(b.score AS numeric), 4)
                 FROM brand_predictions b JOIN analyses a ON a.id = b.analysis_id
                 ORDER BY a.image_sha256, b.region_index, b.rank""",
}


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The database's content without ids and timestamps: equal for equal results."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {name: [tuple(row) for row in conn.execute(text(sql))] for name, sql in SNAPSHOT_QUERIES.items()}
    finally:
        engine.dispose()


def analyses_per_post(url: str) -> dict[str, int]:
    """post id -> how many analyses its picture has."""
    engine = create_engine(url)
    sql = """SELECT p.post_id, count(a.id) FROM posts p LEFT JOIN analyses a ON a.image_sha256 = p.image_sha256
             GROUP BY p.post_id"""
    try:
        with engine.connect() as conn:
            return {post_id: n for post_id, n in conn.execute(text(sql))}
    finally:
        engine.dispose()


def count_analyses(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM analyses")).scalar_one())
    except Exception:
        return 0
    finally:
        engine.dispose()
