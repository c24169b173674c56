"""Analysis modes run over many images by worker processes, one per core, the way ops deploy CarSpot.

A worker process analyses its images in groups (their regions in one classifier call, as the worker groups a
polled batch); ops scale by running more of them (one per core). Measuring a
mode's throughput "on 2 cores" therefore means two such processes, each with single-threaded OpenCV and LiteRT,
sharing the images; that is what `process_pool_runner` does for `carspot.analysis.evaluation`. Each process
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

from carspot.analysis.modes import Analysis
from carspot.analysis.predictors import ModeRun, batch_predictor, warm_up
from carspot.classifier.data import load_image
from carspot.classifier.evaluate import TopK

__all__ = ["AnalysisLoader", "process_pool_runner"]

AnalysisLoader = Callable[[], Analysis]
"""Loads the analysis in a worker process; picklable (a module-level function or a functools.partial of one),
since processes are spawned. The composition root makes it (`carspot.pipeline.app.single_threaded_loader`)."""

_STATE: dict[str, Any] = {}
_STARTUP_LIMIT_S = 900.0
_SECONDS_PER_IMAGE_LIMIT = 30.0


def _init(load_analysis: AnalysisLoader, paths: Sequence[Path], modes: Sequence[str]) -> None:
    """Runs once in each worker process. Errors are kept, not raised: a Pool would respawn a failing
    initializer forever; `_ready` reports them to the parent instead."""
    try:
        analysis = load_analysis()
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
    load_analysis: AnalysisLoader, paths: Sequence[Path], *, modes: Sequence[str], workers: int, batch: int
) -> Iterator[ModeRun]:
    """``workers`` processes (spawned, so no model state is shared by fork), each loading its analysis with
    ``load_analysis`` (single-threaded libraries, one process per core), that analyse ``paths`` in groups of
    ``batch`` images."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not paths:
        raise ValueError("no images to analyse")
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init, initargs=(load_analysis, list(paths), list(modes))) as pool:
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
            n, chunk = len(paths), batch
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
