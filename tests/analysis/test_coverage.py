"""The coverage / accuracy curve: a hand count on a few ranked predictions."""

from __future__ import annotations

import pytest

from carspot.analysis.coverage import THRESHOLDS, coverage_curve, render_curve

TRUTH = ["BMW", "Audi", "Ford", "Kia"]
PREDICTIONS = [
    [("BMW", 0.9), ("Audi", 0.05)],  # right, sure
    [("BMW", 0.45), ("Audi", 0.40)],  # wrong at rank 1, right in the top-5
    [("Ford", 0.25)],  # right, doubtful
    [],  # no car found: never answered
]


def test_each_threshold_answers_the_images_whose_best_make_reaches_it_and_scores_those() -> None:
    curve = {round(p.threshold, 1): p for p in coverage_curve(TRUTH, PREDICTIONS)}
    assert [p.threshold for p in coverage_curve(TRUTH, PREDICTIONS)] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    )
    assert (curve[0.0].answered, curve[0.0].coverage, curve[0.0].top1, curve[0.0].top5) == (3, 0.75, 2 / 3, 1.0)
    assert (curve[0.3].answered, curve[0.3].top1, curve[0.3].top5) == (2, 0.5, 1.0)
    assert (curve[0.5].answered, curve[0.5].top1) == (1, 1.0)
    assert (curve[0.9].answered, curve[0.9].top1) == (1, 1.0)  # a score equal to the threshold is answered
    assert all(p.n == 4 for p in curve.values())


def test_a_threshold_nothing_reaches_answers_nothing_and_scores_zero() -> None:
    (point,) = coverage_curve(TRUTH, PREDICTIONS, thresholds=[0.95])
    assert (point.answered, point.coverage, point.top1, point.top5) == (0, 0.0, 0.0, 0.0)


def test_the_table_marks_the_threshold_in_use() -> None:
    table = render_curve(coverage_curve(TRUTH, PREDICTIONS), chosen=0.3)
    marked = [line for line in table.splitlines() if "<-" in line]
    assert len(marked) == 1 and marked[0].startswith("0.30")
    assert len(table.splitlines()) == 1 + len(THRESHOLDS)


def test_labels_and_predictions_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 labels but 4 predictions"):
        coverage_curve(TRUTH[:3], PREDICTIONS)
