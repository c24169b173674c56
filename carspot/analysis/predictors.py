"""Top-5 predictors over images exactly as the worker computes them, in one process or given to a pool."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from carspot.analysis.modes import Analysis, analyse_images
from carspot.classifier.evaluate import TopK

ModeRun = Callable[[str], tuple[list[TopK], float]]
"""mode -> (each image's top-5, in input order; wall-clock seconds per image)."""

WARM_UP_IMAGES = 8
"""Images each mode runs before the clock starts: the first calls create the runtime's interpreters (one per
batch size, XNNPACK packs the weights for each), a one-off a long-running worker never pays again."""


def warm_up(predict: Callable[[Sequence[np.ndarray]], object], images: Sequence[np.ndarray]) -> None:
    """The first images as one group, then one by one, before the clock starts."""
    predict(images[:WARM_UP_IMAGES])
    for image in images[:WARM_UP_IMAGES]:
        predict([image])


def batch_predictor(analysis: Analysis, mode: str) -> Callable[[Sequence[np.ndarray]], list[TopK]]:
    """The images' top-5 makes exactly as the worker computes them in ``mode``, the images analysed together
    (their regions in one classifier call, `carspot.analysis.modes.analyse_images`)."""
    runner = analysis.runner(mode)

    def predict(images: Sequence[np.ndarray]) -> list[TopK]:
        tops: list[TopK] = []
        for result in analyse_images([(runner, image) for image in images]):
            if isinstance(result, Exception):
                raise result
            tops.append([(b.make, b.score) for b in result.parts.brands])
        return tops

    return predict


def predictor(analysis: Analysis, mode: str) -> Callable[[np.ndarray], TopK]:
    """One image's top-5 makes exactly as the worker computes them in ``mode``."""
    predict_batch = batch_predictor(analysis, mode)
    return lambda image: predict_batch([image])[0]


def in_process(analysis: Analysis, images: Sequence[np.ndarray], *, batch: int) -> ModeRun:
    """Each mode over ``images`` in this process, ``batch`` images at a time as the worker groups them (threads
    as the libraries use them)."""

    def run(mode: str) -> tuple[list[TopK], float]:
        predict = batch_predictor(analysis, mode)
        warm_up(predict, images)
        started = time.perf_counter()
        predictions = [top for i in range(0, len(images), batch) for top in predict(images[i : i + batch])]
        return predictions, (time.perf_counter() - started) / len(images)

    return run


__all__ = ["WARM_UP_IMAGES", "ModeRun", "batch_predictor", "in_process", "predictor", "warm_up"]
