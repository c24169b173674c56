"""What the worker stores per image, gathered for measurements: its top-5 and how many cars it counted.

`carspot evaluate` and ``bench/cars.py`` score the same analyses the worker writes, so "cars per image" there is
the "cars detected" a dashboard shows, and a top-5 is what brand share counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from carspot.analysis.coverage import CoveragePoint, coverage_curve, curve_to_json, render_curve
from carspot.analysis.modes import Analysis, analyse_images
from carspot.classifier.data import load_image, load_samples
from carspot.classifier.evaluate import EvaluationReport, TopK, report_from_predictions


@dataclass(frozen=True)
class ImageOutcome:
    """One image as stored: its top-5 makes (best first) and its car regions."""

    top: TopK
    cars: int


def analyse_outcomes(
    analysis: Analysis, *, mode: str, images: Iterable[np.ndarray], batch: int = 8
) -> Iterator[ImageOutcome]:
    """Each image analysed in ``mode`` as the worker does, ``batch`` images per classifier call; an image the
    analysis refuses raises (a measurement must not skip images silently)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    runner = analysis.runner(mode)
    pending = iter(images)
    while group := list(islice(pending, batch)):
        for result in analyse_images([(runner, image) for image in group]):
            if isinstance(result, Exception):
                raise result
            parts = result.parts
            yield ImageOutcome(top=[(b.make, b.score) for b in parts.brands], cars=len(parts.regions))


@dataclass(frozen=True)
class CarCount:
    """How many car regions the images got: on single-car photos, every image should count exactly one."""

    images: int
    cars: int
    none: int
    one: int
    several: int

    @property
    def per_image(self) -> float:
        return self.cars / self.images if self.images else 0.0

    def render(self) -> str:
        return (
            f"cars per image {self.per_image:.3f}  ({self.cars} cars in {self.images} images: "
            f"{self.none} with none, {self.one} with one, {self.several} with several)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "cars": self.cars,
            "per_image": self.per_image,
            "none": self.none,
            "one": self.one,
            "several": self.several,
        }


def count_cars(outcomes: Sequence[ImageOutcome]) -> CarCount:
    """The cars counted over ``outcomes``, with how many images got none, one or several."""
    cars = [o.cars for o in outcomes]
    return CarCount(
        images=len(cars),
        cars=sum(cars),
        none=sum(c == 0 for c in cars),
        one=sum(c == 1 for c in cars),
        several=sum(c > 1 for c in cars),
    )


@dataclass(frozen=True)
class ModeEvaluation:
    """`carspot evaluate` in one mode: the paper's numbers, the cars counted, and the coverage / accuracy curve
    with the threshold the analysis uses."""

    report: EvaluationReport
    cars: CarCount
    curve: tuple[CoveragePoint, ...]
    min_brand_confidence: float

    def render(self) -> str:
        chosen = self.min_brand_confidence
        return "\n".join(
            [
                self.report.table(),
                self.cars.render(),
                f"coverage / accuracy by the best make's confidence (now {chosen:g}: below it, an unidentified car)",
                render_curve(self.curve, chosen=chosen),
            ]
        )

    def to_json(self) -> str:
        """One line: the report's fields, then ``cars``, ``coverage`` and ``min_brand_confidence``."""
        return json.dumps(
            {
                **self.report.to_dict(),
                "cars": self.cars.to_dict(),
                "coverage": curve_to_json(self.curve),
                "min_brand_confidence": self.min_brand_confidence,
            },
            separators=(",", ":"),
        )


def evaluate_mode(
    analysis: Analysis,
    data: Path,
    *,
    mode: str,
    batch: int = 8,
    confusion_png: Path | None = None,
    progress: bool = False,
) -> ModeEvaluation:
    """The labelled photos under ``data`` (folder per make, or CSV ``path, make``) analysed in ``mode`` as the
    worker analyses them, scored."""
    samples = load_samples(data)
    images: Iterable[np.ndarray] = (load_image(s.path) for s in samples)
    if progress:
        from tqdm import tqdm

        images = tqdm(images, total=len(samples), desc="evaluate", unit="img")
    outcomes = list(analyse_outcomes(analysis, mode=mode, images=images, batch=batch))
    truth, tops = [s.make for s in samples], [o.top for o in outcomes]
    report = report_from_predictions(truth, tops)
    if confusion_png is not None:
        report.save_confusion_png(confusion_png)
    return ModeEvaluation(
        report=report,
        cars=count_cars(outcomes),
        curve=coverage_curve(truth, tops),
        min_brand_confidence=analysis.min_brand_confidence,
    )
