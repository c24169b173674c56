"""Measuring the analysis modes side by side, as the reference paper's Figures 10 and 11.

Every image is analysed exactly the way the worker analyses it (whole photos, background and all); the image's
top-5 makes are scored against its label. Besides the overall numbers, each mode is scored on the images the
``standard`` mode gets wrong (cars that do not fill the frame) and, for composite scenes, per car-size bucket.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carspot.analysis.modes import Analysis
from carspot.analysis.parallel import AnalysisLoader, process_pool_runner
from carspot.analysis.predictors import ModeRun, in_process
from carspot.classifier.data import Sample, load_image, load_samples
from carspot.classifier.evaluate import EvaluationReport, report_from_predictions

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
    load_analysis: AnalysisLoader | None = None,
    batch: int = 8,
    workers: int = 1,
) -> Comparison:
    """The modes side by side on a labelled folder or CSV: in this process with ``analysis``, or spread over
    ``workers`` processes that each call ``load_analysis`` (picklable; `carspot.analysis.parallel`). Either way
    images are analysed in groups of ``batch`` (the worker's ``analysis_batch_images``)."""
    samples = load_samples(data)
    buckets = read_buckets(data)
    if workers <= 1:
        if analysis is None:
            raise ValueError("compare_path in one process needs the analysis")
        images = [load_image(s.path) for s in samples]
        run_mode = in_process(analysis, images, batch=batch)
        return compare_modes(samples, modes=modes, run_mode=run_mode, buckets=buckets)
    if load_analysis is None:
        raise ValueError("compare_path with worker processes needs a loader of the analysis")
    paths = [Path(s.path) for s in samples]
    with process_pool_runner(load_analysis, paths, modes=modes, workers=workers, batch=batch) as run:
        return compare_modes(samples, modes=modes, run_mode=run, buckets=buckets)


__all__ = ["Comparison", "ModeResult", "compare_modes", "compare_path"]
