"""Car-check reports from rates, for the gate's tests."""

from __future__ import annotations

from carspot.classifier.car_check import CarCheckReport


def check_report(recall: float, false_rate: float) -> CarCheckReport:
    """1,000 car photos and 100 car-free images, at the analysis' default thresholds."""
    return CarCheckReport(
        car_photos=1000,
        cars_accepted=round(recall * 1000),
        car_free=100,
        car_free_passed=round(false_rate * 100),
        accept_threshold=0.05,
        refute_threshold=0.005,
    )
