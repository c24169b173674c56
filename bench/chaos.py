"""Chaos benchmark (issue 24): N posts through ingest → Kafka → workers → PostgreSQL while, at moments drawn from
a seed, a worker is SIGKILLed (and a new one started), PostgreSQL is stopped for a while, and the broker is
SIGKILLed and restarted. Then it counts against what the source holds:

    lost         good posts that never reached the database
    duplicated   post ids or (picture, mode, model) analyses stored more than once (SQL GROUP BY ... HAVING)
    dead letters per planted bad input (target: exactly 1 each, and none for a good post)
    recovery     seconds from a service being back to the next stored analysis (target: <= 30 s)

It starts its OWN Kafka, PostgreSQL and Redis under a temporary folder (carspot.infra.outages), on free loopback
ports: the services of `carspot services up` are never touched. Exit status 1 when a target is missed.

    .venv/bin/python bench/chaos.py --posts 2000 --seed 1 [--workers 2] [--pg-outage 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kafka import KafkaConsumer, TopicPartition
from PIL import Image
from sqlalchemy import create_engine, text

from carspot.infra.outages import PrivateStack
from carspot.pipeline.deadletter import DeadLetter
from carspot.pipeline.settings import Settings

CARSPOT = str(Path(sys.executable).with_name("carspot"))
POSTS, DLQ = "carspot.posts", "carspot.posts.dlq"
RECOVERY_TARGET_S = 30.0
DUPLICATES = {
    "posts": "SELECT count(*) FROM (SELECT post_id FROM posts GROUP BY post_id HAVING count(*) > 1) d",
    "analyses": """SELECT count(*) FROM (SELECT 1 FROM analyses GROUP BY image_sha256, mode, model_version
                   HAVING count(*) > 1) d""",
}


def make_source(folder: Path, scenes: Path, *, posts: int, bad: int, rng: random.Random) -> tuple[Path, set[str]]:
    """``posts`` lines: distinct crops of the real scenes, and ``bad`` planted bad inputs (files that are not
    pictures, truncated pictures, a hostile line); returns the JSONL and the bad post ids."""
    sources = [Image.open(p).convert("RGB") for p in sorted(scenes.iterdir()) if p.suffix in {".jpg", ".png"}]
    lines: list[bytes] = []
    bad_ids: set[str] = set()
    bad_at = set(rng.sample(range(posts), bad))
    for i in range(posts):
        post_id = f"chaos-{i:05d}"
        path = folder / f"{i:05d}.jpg"
        if i in bad_at:
            bad_ids.add(post_id)
            kind = len(bad_ids) % 3
            if kind == 0:  # a hostile JSONL line: a lone surrogate (defect 1)
                lines.append(b'{"post_id": "%s", "image": "x.jpg", "text": "a\\ud800b"}\n' % post_id.encode())
                continue
            path.write_bytes(b"not a picture\n" * 10 if kind == 1 else _jpeg_head(sources[0]))
        else:
            scene = sources[i % len(sources)]
            w, h = scene.size
            box = (
                rng.randint(0, w // 6),
                rng.randint(0, h // 6),
                w - rng.randint(0, w // 6),
                h - rng.randint(0, h // 6),
            )
            scene.crop(box).resize((rng.randint(200, 480), rng.randint(160, 360))).save(path, quality=85)
        lines.append(json.dumps({"post_id": post_id, "image": path.name, "author": "@chaos"}).encode() + b"\n")
    jsonl = folder / "posts.jsonl"
    jsonl.write_bytes(b"".join(lines))
    return jsonl, bad_ids


def _jpeg_head(image: Image.Image) -> bytes:
    """The first half of a JPEG: a truncated picture."""
    path = Path(tempfile.mkstemp(suffix=".jpg")[1])
    try:
        image.save(path, quality=85)
        data = path.read_bytes()
    finally:
        path.unlink()
    return data[: len(data) // 2]


@dataclass
class Progress:
    """Polls the database for the number of stored analyses and posts (None while it is down)."""

    url: str
    samples: list[tuple[float, int]] = field(default_factory=list)

    def counts(self) -> tuple[int, int] | None:
        engine = create_engine(self.url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                analyses = int(conn.execute(text("SELECT count(*) FROM analyses")).scalar_one())
                posts = int(conn.execute(text("SELECT count(*) FROM posts")).scalar_one())
        except Exception:
            return None
        finally:
            engine.dispose()
        self.samples.append((time.monotonic(), analyses))
        return analyses, posts

    def sample(self, stop: threading.Event, *, every_s: float = 1.0) -> None:
        """Count every ``every_s`` until ``stop`` is set (a thread), so recovery can be read off afterwards."""
        while not stop.wait(every_s):
            self.counts()

    def first_progress_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first sample with more analyses than the last one before it."""
        before = [n for t, n in self.samples if t <= moment]
        base = before[-1] if before else 0
        later = [t for t, n in self.samples if t > moment and n > base]
        return later[0] - moment if later else None


def start_worker(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([CARSPOT, "worker", "--timeout", "3600"], env=env, stdout=log, stderr=subprocess.STDOUT)


def dead_letter_counts(bootstrap: str) -> Counter[str]:
    """Committed dead letters per post id (read_committed: an aborted transaction's letters do not count)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(DLQ, p) for p in sorted(consumer.partitions_for_topic(DLQ) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        letters: Counter[str] = Counter()
        for _ in range(600):  # bounded
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    letters[DeadLetter.decode(record.value).post_id or "?"] += 1
        return letters
    finally:
        consumer.close()


def wait(until: Callable[[], bool], *, timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if until():
            return True
        time.sleep(every_s)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--bad", type=int, default=20, help="planted bad inputs among the posts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-outage", type=float, default=30.0, help="seconds PostgreSQL stays down")
    parser.add_argument("--window", type=float, default=0.0, help="seconds in which the faults fall (0: estimate)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--logs", type=Path, default=None, help="keep the workers' and ingest's logs here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = Settings.load()
    with tempfile.TemporaryDirectory(prefix="carspot-chaos-") as tmp:
        root = Path(tmp)
        stack = PrivateStack(root=root / "data" / "services", topics={POSTS: 2, DLQ: 1})
        children: list[subprocess.Popen[bytes]] = []
        try:
            return run(args, rng, settings, root, stack, children)
        finally:
            for child in children:  # a worker that hung or an interrupted run: nothing of ours is left behind
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=30)
            stack.stop()


def run(
    args: argparse.Namespace,
    rng: random.Random,
    settings: Settings,
    root: Path,
    stack: PrivateStack,
    children: list[subprocess.Popen[bytes]],
) -> int:
    (root / "src").mkdir()
    jsonl, bad_ids = make_source(
        root / "src", settings.shared_dir / "data" / "scenes", posts=args.posts, bad=args.bad, rng=rng
    )
    good_ids = {f"chaos-{i:05d}" for i in range(args.posts)} - bad_ids
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARSPOT_")}
    env.update(
        CARSPOT_DATA_DIR=str(root / "data"),  # its services.env points at the private stack
        CARSPOT_SHARED_DIR=str(settings.shared_dir.resolve()),
        CARSPOT_LOG_LEVEL="WARNING",
        CARSPOT_PHASH_DEDUP="false",  # crops of a few scenes: every post is its own picture here
    )
    subprocess.run([CARSPOT, "migrate"], env=env, check=True, capture_output=True)
    database_url = stack.endpoints.database_url
    progress = Progress(database_url)
    logs = args.logs or root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker_log = (logs / "workers.log").open("ab")
    workers = [start_worker(env, worker_log) for _ in range(args.workers)]
    children.extend(workers)
    window = args.window or max(30.0, args.posts / 25.0)  # faults fall while the work goes on
    moments = sorted(
        [
            (rng.uniform(0.1, 0.4) * window, "kill_worker"),
            (rng.uniform(0.3, 0.6) * window, "stop_postgres"),
            (rng.uniform(0.6, 0.9) * window, "restart_kafka"),
        ]
    )
    started = time.monotonic()
    ingest_log = (logs / "ingest.log").open("ab")
    ingest = subprocess.Popen([CARSPOT, "ingest", f"jsonl:{jsonl}"], env=env, stdout=ingest_log, stderr=ingest_log)
    children.append(ingest)
    back: dict[str, float] = {}
    events: list[str] = []
    sampling = threading.Event()
    sampler = threading.Thread(target=progress.sample, args=(sampling,), daemon=True)
    sampler.start()
    # The faults' clock starts once work flows (the workers load their models first): a fault before that
    # would only measure the start-up.
    if not wait(lambda: (progress.counts() or (0, 0))[0] > 0, timeout_s=args.timeout, every_s=1.0):
        raise SystemExit("no analysis was stored: the pipeline never started")
    started = time.monotonic()
    for at, fault in moments:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        offset = time.monotonic() - started
        if fault == "kill_worker":
            victim = workers.pop(0)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            workers.append(start_worker(env, worker_log))
            children.append(workers[-1])
            back[fault] = time.monotonic()
            events.append(f"{offset:6.1f} s  worker SIGKILLed, a new one started")
        elif fault == "stop_postgres":
            stack.stop_postgres()
            events.append(f"{offset:6.1f} s  PostgreSQL stopped for {args.pg_outage:.0f} s")
            time.sleep(args.pg_outage)
            stack.restart()
            back[fault] = time.monotonic()
        else:
            stack.kill_kafka()
            events.append(f"{offset:6.1f} s  broker SIGKILLed, restarted")
            stack.restart()
            back[fault] = time.monotonic()
    finished = wait(
        lambda: ingest.poll() is not None and (progress.counts() or (0, 0))[1] >= len(good_ids),
        timeout_s=args.timeout,
        every_s=1.0,
    )
    elapsed = time.monotonic() - started
    sampling.set()
    sampler.join(timeout=10)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    worker_codes: list[int | None] = []
    for worker in workers:
        try:
            worker_codes.append(worker.wait(timeout=120))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker_codes.append(None)
    figures = count(database_url, stack, good_ids, bad_ids)
    figures.update(
        seconds=round(elapsed, 1),
        finished=finished,
        ingest_exit=ingest.poll(),
        worker_exits=worker_codes,
        recovery_s={k: _round(progress.first_progress_after(t)) for k, t in back.items()},
        events=events,
    )
    report(figures, as_json=args.json)
    recovered = all(v is not None and v <= RECOVERY_TARGET_S for v in figures["recovery_s"].values())
    ok = (
        finished
        and figures["lost"] == 0
        and figures["duplicated_posts"] == 0
        and figures["duplicated_analyses"] == 0
        and figures["bad_without_exactly_one_letter"] == 0
        and figures["letters_for_good_posts"] == 0
        and recovered
        and all(code == 0 for code in worker_codes)
    )
    return 0 if ok else 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def count(database_url: str, stack: PrivateStack, good_ids: set[str], bad_ids: set[str]) -> dict[str, Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(text("SELECT post_id FROM posts")).scalars())
            duplicated = {name: int(conn.execute(text(sql)).scalar_one()) for name, sql in DUPLICATES.items()}
    finally:
        engine.dispose()
    letters = dead_letter_counts(stack.endpoints.kafka_bootstrap)
    return {
        "posts": len(good_ids) + len(bad_ids),
        "planted_bad": len(bad_ids),
        "stored": len(stored),
        "lost": len(good_ids - stored),
        "duplicated_posts": duplicated["posts"],
        "duplicated_analyses": duplicated["analyses"],
        "dead_letters": sum(letters.values()),
        "bad_without_exactly_one_letter": sum(1 for pid in bad_ids if letters[pid] != 1),
        "letters_for_good_posts": sum(n for pid, n in letters.items() if pid in good_ids),
    }


def report(figures: dict[str, Any], *, as_json: bool) -> None:
    for line in figures["events"]:
        print(line)
    print(
        f"posts {figures['posts']} (planted bad {figures['planted_bad']}) in {figures['seconds']} s: "
        f"lost {figures['lost']}, duplicated {figures['duplicated_posts']} posts / "
        f"{figures['duplicated_analyses']} analyses, dead letters {figures['dead_letters']} "
        f"(bad inputs without exactly one: {figures['bad_without_exactly_one_letter']}, "
        f"for good posts: {figures['letters_for_good_posts']})"
    )
    print("time to recover (s): " + ", ".join(f"{k} {v}" for k, v in figures["recovery_s"].items()))
    print(f"ingest exit {figures['ingest_exit']}, worker exits {figures['worker_exits']}")
    if as_json:
        print(json.dumps({k: v for k, v in figures.items() if k != "events"}))


if __name__ == "__main__":
    sys.exit(main())
