"""Analysis modes run over many images by worker processes, one per core, the way ops deploy CarSpot.

A worker process analyses its images in groups (their regions in one classifier call, as the worker groups a
polled batch); ops scale by running more of them (one per core). Measuring a
mode's throughput "on 2 cores" therefore means two such processes, each with single-threaded OpenCV and LiteRT,
sharing the images; that is what `process_pool_runner` does for `carspot.pipeline.evaluation`. Each process
loads the models and decodes its images before the clock starts, and runs every mode on a few images as a
warm-up, so the timed part is decoded image → top-5, as in a long-running worker.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from carspot.classifier.data import load_image
from carspot.classifier.evaluate import TopK
from carspot.pipeline.settings import Settings

__all__ = ["ModeRun", "process_pool_runner", "warm_up"]

ModeRun = Callable[[str], tuple[list[TopK], float]]
"""mode -> (each image's top-5, in input order; wall-clock seconds per image)."""

_STATE: dict[str, Any] = {}
WARM_UP_IMAGES = 8
"""Images each mode runs before the clock starts: the first calls create the runtime's interpreters (one per
batch size, XNNPACK packs the weights for each), a one-off a long-running worker never pays again."""
_STARTUP_LIMIT_S = 900.0
_SECONDS_PER_IMAGE_LIMIT = 30.0


def warm_up(predict: Callable[[Sequence[Any]], object], images: Sequence[Any]) -> None:
    """The first images as one group, then one by one, before the clock starts."""
    predict(images[:WARM_UP_IMAGES])
    for image in images[:WARM_UP_IMAGES]:
        predict([image])


def _init(settings: Settings, paths: Sequence[Path], modes: Sequence[str]) -> None:
    """Runs once in each worker process. Errors are kept, not raised: a Pool would respawn a failing
    initializer forever; `_ready` reports them to the parent instead."""
    try:
        from carspot.pipeline.app import load_analysis
        from carspot.pipeline.evaluation import batch_predictor

        analysis = load_analysis(settings)
        images = [load_image(path) for path in paths]
        predictors = {mode: batch_predictor(analysis, mode) for mode in modes}
        for predict in predictors.values():
            warm_up(predict, images)
        _STATE.update(images=images, predictors=predictors, error=None)
    except Exception as exc:  # reported by _ready
        _STATE["error"] = f"{type(exc).__name__}: {exc}"


def _ready(_: int) -> tuple[int, str | None]:
    time.sleep(0.05)  # long enough that one process cannot answer every probe before the others start
    return os.getpid(), _STATE.get("error")


def _run(task: tuple[str, list[int]]) -> list[tuple[int, TopK]]:
    mode, indices = task
    tops = _STATE["predictors"][mode]([_STATE["images"][i] for i in indices])
    return list(zip(indices, tops, strict=True))


@contextmanager
def process_pool_runner(
    settings: Settings, paths: Sequence[Path], *, modes: Sequence[str], workers: int
) -> Iterator[ModeRun]:
    """``workers`` processes (spawned, so no model state is shared by fork), each with one OpenCV and one
    LiteRT thread, that analyse ``paths`` in groups of ``settings.analysis_batch_images`` images."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not paths:
        raise ValueError("no images to analyse")
    per_process = settings.model_copy(update={"classifier_threads": 1, "cv_threads": 1})
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init, initargs=(per_process, list(paths), list(modes))) as pool:
        started, pids = time.monotonic(), set[int]()
        while len(pids) < workers:
            probes = pool.map_async(_ready, range(2 * workers), chunksize=1).get(timeout=_STARTUP_LIMIT_S)
            for pid, error in probes:
                if error:
                    raise RuntimeError(f"a worker process could not load the analysis: {error}")
                pids.add(pid)
            if time.monotonic() - started > _STARTUP_LIMIT_S:
                raise TimeoutError(f"only {len(pids)} of {workers} worker processes started")

        def run(mode: str) -> tuple[list[TopK], float]:
            n, chunk = len(paths), settings.analysis_batch_images
            tasks = [(mode, list(range(i, min(i + chunk, n)))) for i in range(0, n, chunk)]
            clock = time.perf_counter()
            # bounded: a worker killed mid-task would otherwise leave Pool.map waiting forever
            done = pool.map_async(_run, tasks, chunksize=1).get(timeout=60 + _SECONDS_PER_IMAGE_LIMIT * n)
            seconds = (time.perf_counter() - clock) / n
            predictions: list[TopK] = [[] for _ in range(n)]
            for part in done:
                for i, top in part:
                    predictions[i] = top
            return predictions, seconds

        yield run
