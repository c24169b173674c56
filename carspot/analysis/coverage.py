"""The coverage / accuracy curve: how many images get a confident make at each confidence threshold, and how
often that make is right.

An image is *answered* at threshold t when its best make's calibrated probability reaches t; below it, the
analysis stores it as an unidentified car (``CARSPOT_MIN_BRAND_CONFIDENCE``), and an image without brands (no
car found) is never answered. Reading the curve is how that setting is chosen: a higher threshold answers fewer
images, and answers them better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from carspot.classifier.evaluate import TopK

THRESHOLDS: Final = tuple(round(0.1 * i, 1) for i in range(10))
"""0, 0.1, … 0.9."""


@dataclass(frozen=True)
class CoveragePoint:
    """At ``threshold``: ``answered`` images of ``n`` (``coverage``), and the top-1 / top-5 accuracy over them
    (0 when none is answered)."""

    threshold: float
    n: int
    answered: int
    coverage: float
    top1: float
    top5: float


def coverage_curve(
    truth: Sequence[str], predictions: Sequence[TopK], *, thresholds: Sequence[float] = THRESHOLDS
) -> tuple[CoveragePoint, ...]:
    """One point per threshold, for ranked predictions (best first) against the true makes."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} labels but {len(predictions)} predictions")
    points = []
    for threshold in thresholds:
        answered = [(make, top) for make, top in zip(truth, predictions, strict=True) if top and top[0][1] >= threshold]
        hits1 = sum(top[0][0] == make for make, top in answered)
        hits5 = sum(make in [m for m, _ in top[:5]] for make, top in answered)
        count = len(answered)
        points.append(
            CoveragePoint(
                threshold=float(threshold),
                n=len(truth),
                answered=count,
                coverage=count / len(truth) if truth else 0.0,
                top1=hits1 / count if count else 0.0,
                top5=hits5 / count if count else 0.0,
            )
        )
    return tuple(points)


def render_curve(points: Sequence[CoveragePoint], *, chosen: float | None = None) -> str:
    """The curve as a table; ``chosen`` (the current setting) is marked when it is one of the thresholds."""
    lines = [f"{'confidence >=':<15}{'answered':>10}{'coverage':>10}{'top-1':>8}{'top-5':>8}"]
    for p in points:
        mark = "  <- CARSPOT_MIN_BRAND_CONFIDENCE" if chosen is not None and abs(p.threshold - chosen) < 1e-9 else ""
        lines.append(f"{p.threshold:<15.2f}{p.answered:>10}{p.coverage:>10.1%}{p.top1:>8.1%}{p.top5:>8.1%}{mark}")
    return "\n".join(lines)


def curve_to_json(points: Sequence[CoveragePoint]) -> list[dict[str, Any]]:
    return [asdict(p) for p in points]
