"""How well a brand model's car head ("is this a car?") works, at the thresholds the analysis uses it at.

Promotion compared brand accuracy on car photos only, so a challenger whose car head had drifted passed it:
20261130T134043Z (fine-tuned at twice the rate) was 2.3 points better in top-1, yet its car head let a
detector's box on the astronaut through and left 25 of the 38 car-free images unrefuted (the champion: 1).
This report is the second half of the gate (`carspot.classifier.registry.promote`): on the evaluation's car
photos, the share the car head accepts as a car region (P(car) >= the whole-image threshold); on car-free
images, the share it would *not* refute (P(car) >= the detector box threshold, the lowest threshold the
analysis applies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

__all__ = ["CarCheckReport", "car_check_regression", "measure_car_check"]

CarScorer = Callable[..., tuple[Any, np.ndarray]]
"""``predict_regions(crops, *, top_k, min_car)`` of `carspot.classifier.serving.BrandClassifier`."""


@dataclass(frozen=True)
class CarCheckReport:
    car_photos: int
    cars_accepted: int
    """Car photos with P(car) >= ``accept_threshold``."""
    car_free: int
    car_free_passed: int
    """Car-free images with P(car) >= ``refute_threshold``: what a wrong detector box on them would keep."""
    accept_threshold: float
    refute_threshold: float

    @property
    def car_recall(self) -> float:
        return self.cars_accepted / self.car_photos if self.car_photos else 0.0

    @property
    def false_car_rate(self) -> float:
        return self.car_free_passed / self.car_free if self.car_free else 0.0

    def summary(self) -> dict[str, float | int]:
        return {
            "car_photos": self.car_photos,
            "car_recall": self.car_recall,
            "car_free": self.car_free,
            "false_car_rate": self.false_car_rate,
            "accept_threshold": self.accept_threshold,
            "refute_threshold": self.refute_threshold,
        }


def _scores(predict_regions: CarScorer, images: Iterable[np.ndarray], *, batch: int) -> np.ndarray:
    chunks: list[np.ndarray] = []
    iterator = iter(images)
    while chunk := list(islice(iterator, batch)):
        # no makes wanted (an infinite floor): a model that can skips its brand pass
        chunks.append(np.asarray(predict_regions(chunk, top_k=1, min_car=np.inf)[1], dtype=np.float32))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def measure_car_check(
    predict_regions: CarScorer,
    *,
    car_photos: Iterable[np.ndarray],
    car_free: Iterable[np.ndarray],
    accept_threshold: float,
    refute_threshold: float,
    batch: int = 32,
) -> CarCheckReport:
    """Scores every image whole (one backbone pass each, ``batch`` at a time, so a large set is never all in
    memory) and counts it against the two thresholds."""
    cars = _scores(predict_regions, car_photos, batch=batch)
    free = _scores(predict_regions, car_free, batch=batch)
    return CarCheckReport(
        car_photos=len(cars),
        cars_accepted=int((cars >= accept_threshold).sum()),
        car_free=len(free),
        car_free_passed=int((free >= refute_threshold).sum()),
        accept_threshold=accept_threshold,
        refute_threshold=refute_threshold,
    )


def car_check_regression(
    candidate: CarCheckReport, champion: CarCheckReport, *, tolerance: float = 0.01
) -> Sequence[str]:
    """Why the candidate's car head is worse than the champion's (empty when it is not), beyond ``tolerance``
    (a share: 0.01 is one point) on either side."""
    reasons = []
    if candidate.car_recall < champion.car_recall - tolerance:
        reasons.append(f"car photos accepted {candidate.car_recall:.4f} vs {champion.car_recall:.4f}")
    if candidate.false_car_rate > champion.false_car_rate + tolerance:
        reasons.append(f"car-free images not refuted {candidate.false_car_rate:.4f} vs {champion.false_car_rate:.4f}")
    return reasons
