"""End-to-end benchmark: N posts through ingest → Kafka → worker(s) → PostgreSQL, on the real services.

Two ways to run:
- mixed (default): the workers start, then ingest runs while they consume; images/s is stored posts over the
  time from the first post ingested to the last one stored.
- ``--prefill``: ingest everything first (once, into a topic every run then reads with its own consumer group
  and database), then start the workers and time them alone, from the moment the consumer group has all of
  them holding partitions to the last post stored (``stored_at``, the database's clock); posts stored before
  that moment are not counted.

``--workers 1,2`` runs each count in turn (``--repeat`` times each) and ends with the scaling efficiency,
rate with N workers / (N × rate with 1), from the median rates. Each worker runs in its own session whose
autogroup gets the weight of nice -15 (the machine is shared). Also printed: ingest→stored latency (p50/p95),
time per worker stage, the workers' CPU seconds per image over the timed window, which partitions each worker
held, and their peak RSS. Post ids are spread evenly over the partitions unless ``--keys hashed`` (a short run's
hashed ids split unevenly, which caps the speed-up: `harness.balanced_post_id`). Needs `carspot services up`.
Asserts nothing.

    .venv/bin/python bench/pipeline.py --posts 1000 --workers 1,2 --threads 1 --prefill [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import CARSPOT, Run, Samples, make_posts, percentile, wait_sampling, worker_stats
from sqlalchemy import create_engine, text

from carspot.pipeline.settings import Settings


def prefill(settings: Settings, jsonl: Path, args: argparse.Namespace) -> tuple[Run, float, dict[str, Any]]:
    """Ingest every post once into a topic that each timed run then reads with its own group and database."""
    run = Run(settings=settings, partitions=args.partitions, threads=args.threads, mode=args.mode)
    started = time.monotonic()
    ingest = subprocess.run(
        [CARSPOT, "ingest", f"jsonl:{jsonl}"], env=run.env, check=True, capture_output=True, text=True
    )
    return run, time.monotonic() - started, json.loads(ingest.stdout)


def one_run(
    settings: Settings,
    jsonl: Path,
    args: argparse.Namespace,
    *,
    workers: int,
    prefilled: tuple[Run, float, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    topic = prefilled[0].topic if prefilled else None
    run = Run(
        settings=settings,
        partitions=args.partitions,
        threads=args.threads,
        mode=args.mode,
        posts_topic=topic,
        extra_env=dict(args.env),
    )
    try:
        ingest_cmd = [CARSPOT, "ingest", f"jsonl:{jsonl}"]
        if prefilled is not None:
            _, ingest_seconds, ingested = prefilled
            procs = run.start_workers(workers)
            held = run.wait_for_members(workers)
            t0 = time.time()
            samples = wait_sampling(procs)
        else:
            procs = run.start_workers(workers)
            held = run.wait_for_members(workers)
            t0 = time.time()
            done: dict[str, Any] = {}

            def ingest_all() -> None:  # beside the sampling of the workers, which covers the whole run
                started = time.monotonic()
                done["ingest"] = subprocess.run(ingest_cmd, env=run.env, check=True, capture_output=True, text=True)
                done["seconds"] = time.monotonic() - started

            ingesting = threading.Thread(target=ingest_all)
            ingesting.start()
            samples = wait_sampling(procs)
            ingesting.join()
            ingest_seconds, ingested = done["seconds"], json.loads(done["ingest"].stdout)
        stats = worker_stats(procs)
        return collect(
            run.db_url,
            stats,
            args,
            workers=workers,
            t0=t0,
            held=held,
            samples=samples,
            ingest_seconds=ingest_seconds,
            ingest=ingested,
        )
    finally:
        run.close()


def collect(
    db_url: str,
    stats: list[dict[str, Any]],
    args: argparse.Namespace,
    *,
    workers: int,
    t0: float,
    held: dict[str, list[int]],
    samples: Samples,
    ingest_seconds: float,
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
    stored = sorted(float(s) for _, s in rows)
    latencies = [float(s) - float(i) for i, s in rows]
    if args.prefill:
        start = t0
        counted = sum(1 for s in stored if s > t0)
    else:
        start = min(float(i) for i, _ in rows)
        counted = len(stored)
    end = stored[-1]
    messages = sum(s["messages"] for s in stats)
    stages: dict[str, float] = {}
    for s in stats:
        for stage, seconds in s["seconds"].items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    cpu = samples.cpu_between(start, end)
    return {
        "run": "prefill" if args.prefill else "mixed",
        "mode": args.mode or Settings.model_fields["mode"].default.value,
        "posts": args.posts,
        "workers": workers,
        "threads_per_worker": args.threads or Settings.model_fields["classifier_threads"].default,
        "partitions": args.partitions,
        "partitions_held": sorted(len(p) for p in held.values()),
        "env": [f"{k}={v}" for k, v in args.env],
        "stored_posts": len(rows),
        "analyses": analyses,
        "cars": cars,
        "ingest_posts_per_s": round(args.posts / ingest_seconds, 1),
        "images_per_s": round(counted / (end - start), 2),
        "timed_s": round(end - start, 1),
        "cpu_s_per_image": round(cpu / max(counted, 1), 4),
        "cores_used": round(cpu / (end - start), 2),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "stage_ms_per_image": {k: round(1000 * v / max(messages, 1), 2) for k, v in stages.items()},
        "batches": sum(s["batches"] for s in stats),
        "worker_peak_rss_mb": round(samples.peak_rss / 2**20, 1),
        "dead_letters": ingest.get("rejected", {}),
    }


def report(figures: dict[str, Any]) -> None:
    f = figures
    print(
        f"{f['run']} · {f['mode']} · posts {f['posts']} · workers {f['workers']} × {f['threads_per_worker']} threads"
        f" · partitions {f['partitions']} (held per worker: {f['partitions_held']})"
        + (f" · {' '.join(f['env'])}" if f["env"] else "")
    )
    print(f"  stored posts       {f['stored_posts']}  (analyses {f['analyses']}, cars {f['cars']})")
    print(f"  ingest             {f['ingest_posts_per_s']} posts/s")
    print(f"  workers            {f['images_per_s']} images/s over {f['timed_s']} s")
    print(
        f"  worker CPU         {f['cpu_s_per_image']} s per image, {f['cores_used']} cores busy"
        " (all workers, timed window)"
    )
    if f["run"] == "mixed":  # prefilled posts wait in Kafka by design: their latency means nothing
        print(f"  ingest→stored      p50 {f['latency_p50_s']} s · p95 {f['latency_p95_s']} s")
    print("  worker stages      " + " · ".join(f"{k} {v} ms" for k, v in f["stage_ms_per_image"].items()))
    print(f"  batches            {f['batches']}")
    print(f"  worker peak RSS    {f['worker_peak_rss_mb']} MB", flush=True)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median images/s per worker count, its spread, and the efficiency against one worker."""
    by_count: dict[int, list[float]] = {}
    cpu: dict[int, list[float]] = {}
    for r in results:
        by_count.setdefault(r["workers"], []).append(r["images_per_s"])
        cpu.setdefault(r["workers"], []).append(r["cpu_s_per_image"])
    medians = {n: statistics.median(rates) for n, rates in by_count.items()}
    cpu_medians = {n: statistics.median(c) for n, c in cpu.items()}
    one = medians.get(1)
    rows = []
    for n, rates in sorted(by_count.items()):
        rows.append(
            {
                "workers": n,
                "runs": len(rates),
                "images_per_s_median": round(medians[n], 2),
                "images_per_s_min": min(rates),
                "images_per_s_max": max(rates),
                "efficiency": round(medians[n] / (n * one), 3) if one else None,
                "cpu_s_per_image_median": round(cpu_medians[n], 4),
                # CPU seconds per image with one worker / with n: below 1 when workers cost each other work
                "cpu_efficiency": round(cpu_medians[1] / cpu_medians[n], 3) if one else None,
            }
        )
    return {"scaling": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--workers", default="1", help="worker counts to run in turn, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker count")
    parser.add_argument("--prefill", action="store_true", help="ingest everything first, then time the workers")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--mode", choices=["standard", "detector", "region-search"], default=None)
    parser.add_argument(
        "--threads", type=int, default=0, help="classifier/detector and OpenCV threads per worker (default: settings')"
    )
    parser.add_argument(
        "--env",
        type=lambda kv: tuple(kv.split("=", 1)),
        action="append",
        default=[],
        metavar="CARSPOT_X=V",
        help="a setting for the workers, e.g. CARSPOT_BATCH_MAX_MESSAGES=64 (repeatable)",
    )
    parser.add_argument(
        "--keys",
        choices=["balanced", "hashed"],
        default="balanced",
        help="post ids spread evenly over the partitions (the steady state of a large volume; default) or plain "
        "ids whose hashes split a short run unevenly (harness.balanced_post_id)",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    settings = Settings.load()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = make_posts(
            Path(tmp),
            settings.shared_dir / "data" / "scenes",
            args.posts,
            partitions=args.partitions if args.keys == "balanced" else None,
        )
        prefilled = prefill(settings, jsonl, args) if args.prefill else None
        try:
            for _ in range(args.repeat):
                for n in counts:  # interleaved, so a change in the machine's load hits every count alike
                    figures = one_run(settings, jsonl, args, workers=n, prefilled=prefilled)
                    report(figures)
                    results.append(figures)
        finally:
            if prefilled is not None:
                prefilled[0].close()
    scaling = summary(results)
    print("scaling (median of runs; min-max)")
    for row in scaling["scaling"]:
        eff = (
            f" · efficiency {row['efficiency']} · CPU per image {row['cpu_s_per_image_median']} s"
            f" (CPU efficiency {row['cpu_efficiency']})"
            if row["efficiency"] is not None
            else ""
        )
        print(
            f"  {row['workers']} worker(s): {row['images_per_s_median']} images/s"
            f" ({row['images_per_s_min']}-{row['images_per_s_max']}, {row['runs']} runs){eff}"
        )
    if args.json:
        print(json.dumps({"runs": results, **scaling}))


if __name__ == "__main__":
    main()
