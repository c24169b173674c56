"""The car head measured at the analysis' thresholds: car photos accepted, car-free images refuted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from carspot.analysis.car_free import car_free_images
from carspot.classifier.car_check import CarCheckReport, car_check_regression, measure_car_check
from carspot.classifier.data import load_image, load_samples
from carspot.classifier.serving import load_classifier
from tests.classifier.car_checks import check_report

MODELS = Path(__file__).resolve().parents[2] / "models"


class BrightnessIsCarness:
    """A fake car head at the I/O edge: P(car) is the image's mean brightness / 255; records batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.floors: set[float] = set()

    def __call__(
        self, crops: Sequence[np.ndarray], *, top_k: int, min_car: float = 0.0
    ) -> tuple[list[list[tuple[str, float]]], np.ndarray]:
        self.batches.append(len(crops))
        self.floors.add(min_car)
        car = np.array([c.mean() / 255 for c in crops], dtype=np.float32)
        return [[("Audi", 1.0)] if p >= min_car else [] for p in car], car


def grey(level: int) -> np.ndarray:
    return np.full((8, 8, 3), level, dtype=np.uint8)


def test_counts_each_side_against_its_own_threshold_in_bounded_batches() -> None:
    head = BrightnessIsCarness()
    cars: Iterator[np.ndarray] = (grey(v) for v in (255, 200, 100, 10, 0))  # P 1.0, 0.78, 0.39, 0.04, 0
    free = [grey(v) for v in (0, 1, 2, 50)]  # P 0, 0.004, 0.008, 0.2
    result = measure_car_check(
        head, car_photos=cars, car_free=free, accept_threshold=0.3, refute_threshold=0.005, batch=2
    )
    assert (result.car_photos, result.cars_accepted, result.car_free, result.car_free_passed) == (5, 3, 4, 2)
    assert result.car_recall == 0.6 and result.false_car_rate == 0.5
    assert head.batches == [2, 2, 1, 2, 2]
    assert head.floors == {np.inf}  # P(car) only: no makes asked for, so no brand pass where it can be skipped
    assert result.summary()["false_car_rate"] == 0.5


@pytest.mark.parametrize(
    ("candidate", "worse"),
    [
        (check_report(0.97, 0.02), []),
        (check_report(0.99, 0.00), []),
        (check_report(0.965, 0.02), []),  # within one point
        (check_report(0.95, 0.02), ["car photos accepted 0.9500 vs 0.9700"]),
        (check_report(0.99, 0.66), ["car-free images not refuted 0.6600 vs 0.0200"]),
    ],
)
def test_a_car_head_is_worse_only_beyond_the_tolerance(candidate: CarCheckReport, worse: list[str]) -> None:
    assert list(car_check_regression(candidate, check_report(0.97, 0.02), tolerance=0.01)) == worse


def test_the_released_car_head_accepts_car_photos_and_refutes_what_has_no_car(
    shared_dir: Path, scenes_dir: Path
) -> None:
    classifier = load_classifier(MODELS)
    samples = load_samples(shared_dir / "data" / "stanford-cars" / "labels.csv")[::400]  # 21 photos
    free = list(car_free_images(scenes_dir=scenes_dir))
    result = measure_car_check(
        classifier.predict_regions,
        car_photos=(load_image(s.path) for s in samples),
        car_free=(image for _name, image in free),
        accept_threshold=0.05,
        refute_threshold=0.005,
    )
    assert result.car_photos == 21 and result.car_free == len(free) == 38
    assert result.car_recall >= 0.9
    assert result.false_car_rate <= 0.05  # the astronaut, whole, is the one car-free image it does not refute
