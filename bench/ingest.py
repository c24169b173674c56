"""Ingest benchmarks (print figures, assert nothing). Traffic stays on loopback.

``x``: N posts with 1 photo each from the local X API (the tests' fake, real tweepy over a real socket,
photos from the Stanford set served on 127.0.0.1) through the safe fetcher, normalising, de-duplication
(sha256 + pHash) into Kafka (own topics, created and deleted here). Prints posts/s, fetch latency p50/p95 and
failures by reason; ``--faults`` makes that share of photos fail on purpose (404, HTML, malformed lines).
Needs Kafka: CARSPOT_KAFKA_BOOTSTRAP or `.carspot/services/services.env` (`carspot services up`).

``phash``: the false-merge rate of the perceptual hash on the Stanford photos (8,144 distinct pictures:
pairs within the threshold, and photos that would be linked to another one) and its recall on re-encoded /
resized copies, per threshold.

    .venv/bin/python bench/ingest.py x --posts 1000 [--faults 0.02]
    .venv/bin/python bench/ingest.py phash [--limit 8144]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from carspot.ingest.dedup import InMemoryDeduplicator  # noqa: E402
from carspot.ingest.fetch import AddressPolicy, FetchEvent, FetchLimits, SafeFetcher  # noqa: E402
from carspot.ingest.images import normalize_image  # noqa: E402
from carspot.ingest.loop import run_ingest  # noqa: E402
from carspot.ingest.phash import InMemoryPhashIndex, phash_bytes  # noqa: E402
from carspot.ingest.x import InMemoryCheckpoint, XSource  # noqa: E402

SHARED = Path(os.environ.get("CARSPOT_SHARED_DIR") or REPO.parent / "shared")  # a worktree is not next to shared/
STANFORD = SHARED / "data" / "stanford-cars" / "images"


def kafka_bootstrap() -> str:
    if os.environ.get("CARSPOT_KAFKA_BOOTSTRAP"):
        return os.environ["CARSPOT_KAFKA_BOOTSTRAP"]
    env = REPO / ".carspot" / "services" / "services.env"
    for line in env.read_text().splitlines() if env.is_file() else []:
        if line.startswith("CARSPOT_KAFKA_BOOTSTRAP="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("no Kafka: set CARSPOT_KAFKA_BOOTSTRAP or run `carspot services up`")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --- x → Kafka ------------------------------------------------------------------------------------------


def bench_x(posts: int, faults: float, seed: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    from carspot.pipeline.ingesting import SinkEmitter
    from carspot.pipeline.kafka_io import KafkaDeadLetterSink, KafkaPostSink, make_producer
    from tests.ingest.fakex import TOKEN, Connection, FakeX
    from tests.ingest.localserver import LocalServer

    rng = random.Random(seed)
    photos = sorted(STANFORD.glob("*.jpg"))
    server = LocalServer().start()
    fake = FakeX(server, hold_open_s=2.0)
    actions: list[tuple[object, ...]] = []
    planned: Counter[str] = Counter()
    for n in range(posts):
        tweet_id = 10_000 + n
        payload = fake.tweet(tweet_id, photos=0)
        key = f"3_{tweet_id}"
        path = f"/media/{key}.jpg"
        roll = rng.random()
        if roll < faults / 3:
            planned["http_404"] += 1  # no route: the server answers 404
        elif roll < 2 * faults / 3:
            planned["not_an_image"] += 1
            server.serve(path, b"<!doctype html><html>login</html>" + b" " * 100, content_type="image/jpeg")
        elif roll < faults:
            planned["broken_record"] += 1
            actions.append(("line", b'{"data": {"id": "' + str(tweet_id).encode() + b'", "text": "cut'))
            continue
        else:
            server.serve(path, photos[n % len(photos)].read_bytes())
        payload["data"]["attachments"] = {"media_keys": [key]}
        payload["includes"]["media"] = [{"media_key": key, "type": "photo", "url": server.url(path)}]
        actions.append(("tweet", payload))
    fake.connections = [Connection([*actions, ("end",)])]

    bootstrap = kafka_bootstrap()
    suffix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    topics = {"posts": f"bench.ingest.posts.{suffix}", "dlq": f"bench.ingest.dlq.{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="carspot-bench-ingest")
    admin.create_topics(
        [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": str(16 << 20)}) for name in topics.values()]
    )
    events: list[FetchEvent] = []
    lock = threading.Lock()

    def observe(event: FetchEvent) -> None:
        with lock:
            events.append(event)

    fetcher = SafeFetcher(policy=AddressPolicy(allow_loopback=True), limits=FetchLimits(attempts=1), observe=observe)
    source = XSource(
        bearer_token=TOKEN,
        fetch=fetcher.fetch_bytes,
        checkpoint=InMemoryCheckpoint(),
        rules=[],
        base_url=fake.base_url,
        backoff_initial_s=0.05,
        backoff_cap_s=0.2,
    )
    producer = make_producer(bootstrap=bootstrap, max_message_bytes=16 << 20, compression="lz4")
    sinks = SinkEmitter(
        posts=KafkaPostSink(producer=producer, topic=topics["posts"]),
        dead_letters=KafkaDeadLetterSink(producer=producer, topic=topics["dlq"]),
    )
    watchdog = threading.Timer(600, source.stop)
    watchdog.start()
    started = time.perf_counter()
    try:
        stats = run_ingest(
            source,
            emit=sinks.emit,
            reject=sinks.reject,
            dedup=InMemoryDeduplicator(),
            normalize=normalize_image,
            near_duplicates=InMemoryPhashIndex(threshold=4),
            max_posts=posts,
        )
        sinks.flush()
        seconds = time.perf_counter() - started
    finally:
        watchdog.cancel()
        source.stop()
        producer.close()
        fetcher.close()
        server.stop()
        admin.delete_topics(list(topics.values()))
        admin.close()
    ok = [e.seconds * 1000 for e in events if e.reason is None]
    print(f"x → Kafka: {posts} posts (1 photo each, Stanford JPEGs), faults planned {dict(planned)}")
    print(f"  produced {stats.emitted} with picture + {stats.emitted_links} links in {seconds:.2f} s")
    print(f"  posts/s (every post taken, incl. failures): {stats.seen / seconds:.1f}")
    print(f"  fetch latency (ok, n={len(ok)}): p50 {percentile(ok, 50):.1f} ms, p95 {percentile(ok, 95):.1f} ms")
    print(f"  failures by reason: {dict(sorted(stats.rejected.items())) or 'none'}")
    print(f"  x stream: {source.stats.connects} connects, {source.stats.malformed_lines} malformed lines")


# --- pHash false merges ---------------------------------------------------------------------------------


def bench_phash(limit: int, recall_sample: int, seed: int) -> None:
    files = sorted(STANFORD.glob("*.jpg"))[:limit]
    started = time.perf_counter()
    hashes = np.array([phash_bytes(p.read_bytes()) for p in files], dtype=np.uint64)
    per_ms = (time.perf_counter() - started) * 1000 / len(files)
    print(f"pHash of {len(files)} Stanford photos (originals, 1/8-scale JPEG decode): {per_ms:.2f} ms each")
    near_counts: dict[int, tuple[int, int]] = {}
    thresholds = (2, 4, 6, 8, 10)
    merged_photos = {t: np.zeros(len(files), dtype=bool) for t in thresholds}
    pairs = Counter[int]()
    for i in range(len(hashes) - 1):
        distances = np.bitwise_count(hashes[i + 1 :] ^ hashes[i])
        for t in thresholds:
            close = np.nonzero(distances <= t)[0]
            if close.size:
                pairs[t] += int(close.size)
                merged_photos[t][i] = True
                merged_photos[t][i + 1 + close] = True
    total_pairs = len(files) * (len(files) - 1) // 2
    for t in thresholds:
        near_counts[t] = (pairs[t], int(merged_photos[t].sum()))

    rng = random.Random(seed)
    sample = rng.sample(files, min(recall_sample, len(files)))
    distances_copy: list[int] = []
    for path in sample:
        data = path.read_bytes()
        original = phash_bytes(normalize_image(data).jpeg)
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
        for scale, quality in ((1.0, 55), (0.5, 75), (0.35, 85)):
            copy = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
            buffer = io.BytesIO()
            copy.save(buffer, "JPEG", quality=quality)
            distances_copy.append(bin(original ^ phash_bytes(normalize_image(buffer.getvalue()).jpeg)).count("1"))
    copies = np.array(distances_copy)
    print(f"{'threshold':>9} {'false-merge pairs':>18} {'pair rate':>11} {'photos merged':>14} {'recall':>8}")
    for t in thresholds:
        n_pairs, n_photos = near_counts[t]
        print(
            f"{t:>9} {n_pairs:>18} {n_pairs / total_pairs:>11.2e} "
            f"{n_photos / len(files):>13.3%} {float((copies <= t).mean()):>8.3%}"
        )
    print(f"recall: {len(copies)} copies of {len(sample)} photos (q55 full size; 50% q75; 35% q85), normalised")
    print("false merges counted over distinct files; a few may be true duplicates inside the data set itself")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    x = sub.add_parser("x")
    x.add_argument("--posts", type=int, default=1000)
    x.add_argument("--faults", type=float, default=0.02)
    x.add_argument("--seed", type=int, default=0)
    ph = sub.add_parser("phash")
    ph.add_argument("--limit", type=int, default=8144)
    ph.add_argument("--recall-sample", type=int, default=300)
    ph.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "x":
        bench_x(args.posts, args.faults, args.seed)
    else:
        bench_phash(args.limit, args.recall_sample, args.seed)


if __name__ == "__main__":
    main()
