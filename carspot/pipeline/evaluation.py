"""Measuring the analysis modes side by side, as the reference paper's Figures 10 and 11.

Every image is analysed exactly the way the worker analyses it (whole photos, background and all); the image's
top-5 makes are scored against its label. Besides the overall numbers, each mode is scored on the images the
``standard`` mode gets wrong (cars that do not fill the frame) and, for composite scenes, per car-size bucket.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carspot.classifier.data import Sample, load_image, load_samples
from carspot.classifier.evaluate import EvaluationReport, TopK, report_from_predictions
from carspot.pipeline.analysis import Analysis, analyse_images
from carspot.pipeline.parallel import ModeRun, process_pool_runner, warm_up
from carspot.pipeline.settings import Settings

STANDARD = "standard"


@dataclass(frozen=True)
class ModeResult:
    mode: str
    report: EvaluationReport
    seconds_per_image: float
    predictions: tuple[tuple[tuple[str, float], ...], ...] = field(repr=False)


@dataclass(frozen=True)
class Comparison:
    n: int
    results: tuple[ModeResult, ...]
    standard_wrong: dict[str, EvaluationReport]  # mode -> report on the images standard's top-5 misses
    by_bucket: dict[str, dict[str, EvaluationReport]]  # bucket -> mode -> report

    def to_json(self) -> dict[str, Any]:
        def short(report: EvaluationReport) -> dict[str, Any]:
            return {
                "n": report.n,
                "top1": report.top1,
                "top5": report.top5,
                "macro_f1": report.macro_f1,
            }

        return {
            "n": self.n,
            "modes": {
                r.mode: {**short(r.report), "ece": r.report.ece, "seconds_per_image": r.seconds_per_image}
                for r in self.results
            },
            "standard_wrong": {mode: short(rep) for mode, rep in self.standard_wrong.items()},
            "by_bucket": {b: {m: short(rep) for m, rep in reps.items()} for b, reps in self.by_bucket.items()},
        }

    def render(self) -> str:
        lines = [f"{'mode':<15}{'top-1':>8}{'top-5':>8}{'macro-F1':>10}{'ECE':>7}{'s/image':>10}   (n={self.n})"]
        for r in self.results:
            rep = r.report
            lines.append(
                f"{r.mode:<15}{rep.top1:>8.1%}{rep.top5:>8.1%}{rep.macro_f1:>10.1%}{rep.ece:>7.3f}"
                f"{r.seconds_per_image:>10.4f}"
            )
        if self.standard_wrong:
            n = next(iter(self.standard_wrong.values())).n
            lines.append(f"\non the {n} images standard mode gets wrong (top-5):")
            for mode, rep in self.standard_wrong.items():
                lines.append(f"{mode:<15}{rep.top1:>8.1%}{rep.top5:>8.1%}{rep.macro_f1:>10.1%}")
        for bucket, reps in self.by_bucket.items():
            n = next(iter(reps.values())).n
            cells = "  ".join(f"{mode} {rep.top5:.1%}" for mode, rep in reps.items())
            lines.append(f"cars filling {bucket:<10} (n={n:>3}) top-5: {cells}")
        return "\n".join(lines)


def read_buckets(data: Path) -> dict[str, str]:
    """path (resolved) -> car-size bucket, when the CSV has a ``bucket`` column (composite scenes)."""
    if data.suffix.lower() != ".csv":
        return {}
    with data.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "bucket" not in rows[0]:
        return {}
    return {str((data.parent / row["path"]).resolve()): row["bucket"] for row in rows}


def _bucket_order(bucket: str) -> tuple[float, str]:
    """'5-10%' before '10-20%': by the bucket's lower bound."""
    head = bucket.split("-", 1)[0].rstrip("%")
    try:
        return (float(head), bucket)
    except ValueError:
        return (float("inf"), bucket)


def batch_predictor(analysis: Analysis, mode: str) -> Callable[[Sequence[np.ndarray]], list[TopK]]:
    """The images' top-5 makes exactly as the worker computes them in ``mode``, the images analysed together
    (their regions in one classifier call, `carspot.pipeline.analysis.analyse_images`)."""
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


def compare_modes(
    samples: Sequence[Sample], *, modes: Sequence[str], run_mode: ModeRun, buckets: dict[str, str] | None = None
) -> Comparison:
    truth = [s.make for s in samples]
    results = []
    for mode in modes:
        predictions, seconds = run_mode(mode)
        results.append(
            ModeResult(
                mode=mode,
                report=report_from_predictions(truth, predictions),
                seconds_per_image=seconds,
                predictions=tuple(tuple(p) for p in predictions),
            )
        )
    by_mode = {r.mode: r for r in results}

    def subset(indices: Sequence[int]) -> dict[str, EvaluationReport]:
        if not indices:
            return {}
        return {
            r.mode: report_from_predictions([truth[i] for i in indices], [list(r.predictions[i]) for i in indices])
            for r in results
        }

    standard_wrong: dict[str, EvaluationReport] = {}
    if STANDARD in by_mode:
        wrong = [i for i, top in enumerate(by_mode[STANDARD].predictions) if truth[i] not in [m for m, _ in top[:5]]]
        standard_wrong = subset(wrong)
    by_bucket: dict[str, dict[str, EvaluationReport]] = {}
    if buckets:
        keys = [buckets.get(str(Path(s.path).resolve()), "") for s in samples]
        for bucket in sorted({k for k in keys if k}, key=_bucket_order):
            by_bucket[bucket] = subset([i for i, k in enumerate(keys) if k == bucket])
    return Comparison(n=len(samples), results=tuple(results), standard_wrong=standard_wrong, by_bucket=by_bucket)


def compare_path(
    data: Path,
    *,
    modes: Sequence[str],
    analysis: Analysis | None = None,
    settings: Settings | None = None,
    workers: int = 1,
) -> Comparison:
    """The modes side by side on a labelled folder or CSV: in this process with ``analysis``, or spread over
    ``workers`` processes that each load the analysis from ``settings`` (`carspot.pipeline.parallel`). Either
    way images are analysed in groups of ``settings.analysis_batch_images`` (its default without settings)."""
    samples = load_samples(data)
    buckets = read_buckets(data)
    if workers <= 1:
        if analysis is None:
            raise ValueError("compare_path in one process needs the analysis")
        images = [load_image(s.path) for s in samples]
        batch = (settings or Settings.model_construct()).analysis_batch_images
        run_mode = in_process(analysis, images, batch=batch)
        return compare_modes(samples, modes=modes, run_mode=run_mode, buckets=buckets)
    if settings is None:
        raise ValueError("compare_path with worker processes needs the settings to load the analysis from")
    with process_pool_runner(settings, [Path(s.path) for s in samples], modes=modes, workers=workers) as run:
        return compare_modes(samples, modes=modes, run_mode=run, buckets=buckets)


__all__ = [
    "Comparison",
    "ModeResult",
    "batch_predictor",
    "compare_modes",
    "compare_path",
    "in_process",
    "predictor",
]
