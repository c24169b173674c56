"""What the worker's Prometheus metrics cost: the same worker with its metrics and with a no-op stand-in.

Two measurements, each run alternately (off, on, off, on, …) and reported as the median of its rounds, in CPU
seconds of this process (``time.process_time``: on a machine shared with other jobs, wall time mostly measures
them) and in wall seconds:

1. loop: ``--messages`` posts through the worker with a free analysis and a no-op database write, so nothing
   but the worker's own bookkeeping is timed: microseconds per message, with and without metrics.
2. real: ``--images`` posts of the shared scenes through the real analysis (CARSPOT_MODE, one thread), database
   write left out; with metrics, the endpoint is served on a loopback port and scraped every second meanwhile.

    .venv/bin/python bench/metrics_overhead.py [--messages 20000] [--images 48] [--rounds 3]

Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from carspot.infra.ports import pick_free_port
from carspot.pipeline.inprocess import InProcessQueue, MemoryDeadLetterSink
from carspot.pipeline.message import Post
from carspot.pipeline.metrics import Stage, WorkerMetrics, serve_metrics
from carspot.pipeline.settings import Settings
from carspot.pipeline.worker import BatchAnalyzer, ImageDecoder, Worker
from carspot.store.records import AnalysisRecord, RegionRecord

Timing = tuple[float, float]  # CPU seconds, wall seconds


class NoMetrics(WorkerMetrics):
    """The worker without metrics: every report is a no-op."""

    def read(self, count: int) -> None:
        pass

    def analysed(self, count: int = 1) -> None:
        pass

    def linked(self, count: int = 1, *, kind: str) -> None:
        pass

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        pass

    def stage(self, stage: Stage, seconds: float) -> None:
        pass

    def batch(self, messages: int) -> None:
        pass

    def stored(self, ingested_at: Iterable[datetime], *, now: datetime | None = None) -> None:
        pass

    def lag(self, lags: Mapping[int, int]) -> None:
        pass

    def model(self, *, version: str, mode: str, detector: str) -> None:
        pass


def run_once(
    messages: Sequence[bytes], *, metrics: WorkerMetrics, analyze: BatchAnalyzer, decode: ImageDecoder
) -> Timing:
    """(CPU seconds, wall seconds) for the worker to handle ``messages`` (queue filled beforehand)."""
    queue = InProcessQueue(topic="bench", capacity=len(messages) + 1)
    for i, value in enumerate(messages):
        queue.send_post(key=f"k{i}", value=value)
    queue.close_for_writing()
    worker = Worker(
        source=queue,
        dead_letters=MemoryDeadLetterSink(),
        analyze=analyze,
        decode_image=decode,
        write_batch=lambda posts, analyses: None,
        poll_timeout_s=0.01,
        metrics=metrics,
        partition_lag=lambda: {0: 0},  # the gauge is set after every poll, as with Kafka
    )
    cpu, wall = time.process_time(), time.perf_counter()
    worker.run(until=lambda: queue.drained)
    return time.process_time() - cpu, time.perf_counter() - wall


def alternate(rounds: int, runs: Mapping[str, Callable[[], Timing]]) -> dict[str, list[Timing]]:
    times: dict[str, list[Timing]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run())
    return times


def free_analysis(items: Sequence[tuple[Post, np.ndarray]]) -> list[AnalysisRecord | Exception]:
    now = datetime.now(UTC)
    return [
        AnalysisRecord(
            image_sha256=post.image_sha256,
            width=post.width,
            height=post.height,
            mode="detector",
            detector="none",
            model_version="bench",
            regions=(RegionRecord(index=0, x1=0, y1=0, x2=8, y2=8, score=0.9, label="car"),),
            brands=(),
            analyzed_at=now,
            duration_ms=0.0,
        )
        for post, _image in items
    ]


def tiny_posts(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        image = f"picture-{i}".encode()
        post = Post(
            post_id=f"p{i}",
            source="bench",
            ingested_at=datetime.now(UTC),
            image_sha256=hashlib.sha256(image).hexdigest(),
            width=64,
            height=48,
            image=image,
        )
        out.append(post.encode())
    return out


def scene_posts(settings: Settings, n: int) -> list[bytes]:
    from carspot.pipeline.app import make_normalizer

    normalize = make_normalizer(settings)
    scenes = sorted((settings.shared_dir / "data" / "scenes").iterdir())
    pictures = [normalize(path.read_bytes()) for path in scenes if path.suffix in (".jpg", ".png")]
    out = []
    for i in range(n):
        picture = pictures[i % len(pictures)]
        post = Post(
            post_id=f"s{i}",
            source="bench",
            ingested_at=datetime.now(UTC),
            image_sha256=picture.sha256,
            width=picture.width,
            height=picture.height,
            image=picture.jpeg,
        )
        out.append(post.encode())
    return out


def scraped(metrics: WorkerMetrics, run: Callable[[WorkerMetrics], Timing]) -> Timing:
    """``run`` with the metrics served on a loopback port and scraped every second meanwhile."""
    server = serve_metrics(metrics.registry, host="127.0.0.1", port=pick_free_port())
    stop = threading.Event()
    scrapes = [0]

    def scrape() -> None:
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
                response.read()
            scrapes[0] += 1

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        return run(metrics)
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def report(title: str, times: dict[str, list[Timing]], *, per: int, unit: str, scale: float) -> None:
    print(f"{title}: {per} per run, median of {len(times['off'])} alternating rounds")
    for index, clock in ((0, "CPU"), (1, "wall")):
        off = statistics.median(t[index] for t in times["off"])
        on = statistics.median(t[index] for t in times["on"])
        runs_off = [round(t[index], 2) for t in times["off"]]
        runs_on = [round(t[index], 2) for t in times["on"]]
        print(f"  {clock:4} without metrics {off / per * scale:9.2f} {unit}  runs {runs_off} s")
        print(f"  {clock:4} with metrics    {on / per * scale:9.2f} {unit}  runs {runs_on} s")
        print(f"  {clock:4} overhead        {(on - off) / per * scale:9.2f} {unit}  ({(on - off) / off * 100:+.2f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=48, help="0 skips the real-analysis measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    zeros = np.zeros((48, 64, 3), np.uint8)
    loop_messages = tiny_posts(args.messages)
    times = alternate(
        args.rounds,
        {
            "off": lambda: run_once(loop_messages, metrics=NoMetrics(), analyze=free_analysis, decode=lambda b: zeros),
            "on": lambda: run_once(
                loop_messages, metrics=WorkerMetrics(), analyze=free_analysis, decode=lambda b: zeros
            ),
        },
    )
    report("worker loop (free analysis, no database)", times, per=args.messages, unit="µs/message", scale=1e6)

    if args.images:
        from carspot.ingest.images import decode_jpeg_rgb
        from carspot.pipeline.app import load_analysis

        settings = Settings.load().model_copy(update={"classifier_threads": 1, "cv_threads": 1})
        analysis = load_analysis(settings)
        posts = scene_posts(settings, args.images)
        run_once(posts[:8], metrics=NoMetrics(), analyze=analysis.analyse_batch, decode=decode_jpeg_rgb)  # warm-up

        def real(metrics: WorkerMetrics) -> Timing:
            return run_once(posts, metrics=metrics, analyze=analysis.analyse_batch, decode=decode_jpeg_rgb)

        times = alternate(args.rounds, {"off": lambda: real(NoMetrics()), "on": lambda: scraped(WorkerMetrics(), real)})
        mode = settings.mode.value
        report(
            f"real analysis ({mode} mode, 1 thread, scraped every s)",
            times,
            per=args.images,
            unit="ms/image",
            scale=1e3,
        )
        off_cpu = statistics.median(t[0] for t in times["off"])
        on_cpu = statistics.median(t[0] for t in times["on"])
        print(f"  images per CPU second: {args.images / off_cpu:.1f} without, {args.images / on_cpu:.1f} with")


if __name__ == "__main__":
    main()
