"""Brand classifier benchmark: crops/s at batch 1 and 32, model load time and peak RSS, on this machine's CPU.

Loads the registry's current version (or ``--version``) from ``--model-dir`` (default: the repository's
``models/``) through the serving code, so the figures include resizing each crop to the version's input side
(its manifest's ``input.size``). Crops are random real-looking sizes cut from the shared Stanford Cars photos.
``regions_crops_per_s_batch8`` is `predict_regions` (brand top-5 and P(car), what the detector and region-search
modes call, every crop's makes wanted; with a car branch, that pass runs it too) and
``car_check_crops_per_s_batch8`` the same call wanting no makes (P(car) only: what a crop that fails its car check
costs). Two ways to use the cores are measured: one process whose
runtime uses ``--threads`` threads, and
``--processes`` single-threaded processes at once (one worker per core, how ops scale CarSpot), whose rates are
summed. ``auto`` serves the ONNX file on CPU;
``--runtime litert`` measures the LiteRT file, ``--runtime tensorflow`` the GPU runtime (on a machine without a
GPU, TensorFlow's CPU device). numpy's BLAS threads are capped as a worker caps them (before
2026-12-07 they were not, and OpenBLAS's spinning threads cost ``predict_regions`` about 1.4 ms per crop). Asserts
nothing.

    .venv/bin/python bench/classifier.py [--model-dir models] [--seconds 10] [--threads 2] [--processes 2]
                                         [--runtime auto|onnxruntime|litert|tensorflow] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import numpy as np
from PIL import Image

from carspot.classifier.runtime import RuntimeChoice
from carspot.pipeline.blas import BLAS_THREADS_DEFAULT, cap_blas_threads

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CARSPOT_SHARED_DIR", ROOT.parent / "shared"))


def crops(n: int, *, seed: int = 0) -> list[np.ndarray]:
    """``n`` crops of 60..400 px from real car photos (the sizes a detector hands over)."""
    rng = np.random.default_rng(seed)
    photos = sorted((SHARED / "data" / "stanford-cars" / "images").glob("*.jpg"))[:64]
    out = []
    for i in range(n):
        image = np.asarray(Image.open(photos[i % len(photos)]).convert("RGB"))
        h, w = image.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(image[y : y + ch, x : x + cw])
        scale = float(rng.uniform(0.3, 1.3))
        out.append(np.asarray(crop.resize((max(8, int(cw * scale)), max(8, int(ch * scale))))))
    return out


def throughput(predict, batch: list[np.ndarray], seconds: float) -> float:  # type: ignore[no-untyped-def]
    predict(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predict(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def cold_load_seconds(model_dir: Path, version: str | None, threads: int, runtime: str) -> float:
    """Load time in a fresh interpreter (imports included), as a worker starting up sees it."""
    code = (
        "import time; t = time.perf_counter();"
        "from carspot.classifier.serving import load_classifier;"
        f"load_classifier({str(model_dir)!r}, {version!r}, threads={threads}, runtime={runtime!r});"
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def parallel(model_dir: Path, version: str | None, *, processes: int, seconds: float, runtime: str) -> dict[str, float]:
    """``processes`` single-threaded copies of this benchmark at once; their rates summed."""
    cmd = [sys.executable, __file__, "--single", "--model-dir", str(model_dir), "--seconds", str(seconds)]
    cmd += ["--runtime", runtime]
    if version:
        cmd += ["--version", version]
    running = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(processes)]
    rates = [json.loads(p.communicate(timeout=30 * seconds + 120)[0].strip().splitlines()[-1]) for p in running]
    return {
        "processes": processes,
        "crops_per_s_batch1_processes": round(sum(r["batch1"] for r in rates), 1),
        "crops_per_s_batch32_processes": round(sum(r["batch32"] for r in rates), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--version", default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runtime", choices=get_args(RuntimeChoice), default="auto")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one process's rates, as JSON
    args = parser.parse_args()

    from carspot.classifier.serving import load_classifier

    if args.single:
        one = load_classifier(args.model_dir, args.version, threads=1, runtime=args.runtime)
        cap_blas_threads(BLAS_THREADS_DEFAULT)
        pool = crops(64)
        rates = [throughput(one.predict, pool[:n], args.seconds) for n in (1, 32)]
        print(json.dumps({"batch1": rates[0], "batch32": rates[1]}))
        return

    started = time.perf_counter()
    classifier = load_classifier(args.model_dir, args.version, threads=args.threads, runtime=args.runtime)
    warm_load = time.perf_counter() - started
    cap_blas_threads(BLAS_THREADS_DEFAULT)
    cold_load = cold_load_seconds(args.model_dir, args.version, args.threads, args.runtime)
    pool = crops(64)
    assert classifier.model_path is not None
    results = {
        "version": classifier.version,
        "runtime": classifier.runtime,
        "input_size": classifier.input_size,
        "model_bytes": classifier.model_path.stat().st_size,
        "threads": args.threads,
        "load_seconds_cold": round(cold_load, 3),
        "load_seconds_in_process": round(warm_load, 3),
        "crops_per_s_batch1": round(throughput(classifier.predict, pool[:1], args.seconds), 1),
        "crops_per_s_batch32": round(throughput(classifier.predict, pool[:32], args.seconds), 1),
        # what the detector and region-search modes call: the brand top-5 and P(car) of each crop
        "regions_crops_per_s_batch8": round(throughput(classifier.predict_regions, pool[:8], args.seconds), 1),
        # P(car) alone (no makes wanted): what a crop that fails its car check costs, and promote's car check
        "car_check_crops_per_s_batch8": round(
            throughput(lambda crops: classifier.predict_regions(crops, min_car=np.inf), pool[:8], args.seconds), 1
        ),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **parallel(args.model_dir, args.version, processes=args.processes, seconds=args.seconds, runtime=args.runtime),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(results))
        return
    for key, value in results.items():
        print(f"{key:<32}{value}")


if __name__ == "__main__":
    main()
