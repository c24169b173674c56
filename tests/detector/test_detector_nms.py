"""Class-aware non-maximum suppression, the score threshold, and boxes inside other boxes."""

from __future__ import annotations

import numpy as np
import pytest

from carspot.detector import Detections, box_inside, box_iou, non_max_suppression, suppress, suppress_contained

BOXES = np.array(
    [
        [0, 0, 10, 10],  # 0: car, best
        [1, 1, 11, 11],  # 1: car, overlaps 0 heavily
        [1, 0, 10, 10],  # 2: truck, same place as 0
        [50, 50, 60, 60],  # 3: car, alone
    ],
    dtype=np.float32,
)
SCORES = np.array([0.9, 0.8, 0.7, 0.2], dtype=np.float32)
CLASSES = np.array([2, 2, 7, 2], dtype=np.int32)


def test_box_iou() -> None:
    iou = box_iou(BOXES[:1], BOXES)
    assert iou.shape == (1, 4)
    np.testing.assert_allclose(iou[0], [1.0, 81 / 119, 0.9, 0.0])
    assert box_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0  # empty boxes, no division by zero


def test_same_class_overlaps_are_suppressed_other_classes_kept() -> None:
    keep = non_max_suppression(BOXES, SCORES, CLASSES, iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 3]


def test_class_agnostic_suppresses_across_classes() -> None:
    keep = non_max_suppression(BOXES, SCORES, iou_threshold=0.5, class_agnostic=True)
    assert keep.tolist() == [0, 3]


def test_score_threshold_and_max_detections() -> None:
    assert non_max_suppression(BOXES, SCORES, CLASSES, iou_threshold=0.5, score_threshold=0.5).tolist() == [
        0,
        2,
    ]
    assert non_max_suppression(BOXES, SCORES, CLASSES, iou_threshold=0.5, max_detections=1).tolist() == [0]
    assert non_max_suppression(BOXES, SCORES, CLASSES, iou_threshold=1.0).tolist() == [0, 1, 2, 3]


def test_empty_input_keeps_nothing() -> None:
    keep = non_max_suppression(np.zeros((0, 4)), np.zeros(0), np.zeros(0), iou_threshold=0.5)
    assert keep.shape == (0,)
    assert len(suppress(Detections.empty(), iou_threshold=0.5)) == 0


def test_rejects_inconsistent_inputs() -> None:
    with pytest.raises(ValueError):
        non_max_suppression(BOXES, SCORES[:2], CLASSES, iou_threshold=0.5)
    with pytest.raises(ValueError):
        non_max_suppression(BOXES, SCORES, None, iou_threshold=0.5)
    with pytest.raises(ValueError):
        non_max_suppression(BOXES, SCORES, CLASSES, iou_threshold=1.5)


def test_suppress_returns_detections_most_confident_first() -> None:
    detections = Detections(
        xyxy=BOXES[::-1].copy(),
        confidence=SCORES[::-1].copy(),
        class_id=CLASSES[::-1].copy(),
        labels=("car", "truck", "car", "car"),
    )
    kept = suppress(detections, iou_threshold=0.5)
    np.testing.assert_allclose(kept.confidence, [0.9, 0.7, 0.2])
    assert kept.labels == ("car", "truck", "car")


def test_box_inside_is_the_share_of_the_first_boxs_area_inside_the_second() -> None:
    whole, wheel, half_out = [0, 0, 100, 50], [10, 30, 30, 50], [80, 0, 120, 50]
    inside = box_inside([wheel, half_out, whole], [whole])
    np.testing.assert_allclose(inside[:, 0], [1.0, 0.5, 1.0])
    assert box_inside([whole], [wheel])[0, 0] == pytest.approx(400 / 5000)  # not symmetric, unlike IoU
    assert box_inside(np.zeros((1, 4)), [whole])[0, 0] == 0.0  # an empty box, no division by zero


def car_with_parts() -> Detections:
    return Detections(
        xyxy=np.array(
            [
                [10, 30, 30, 50],  # 0: a wheel, wholly inside the car
                [0, 0, 100, 50],  # 1: the car
                [90, 0, 140, 50],  # 2: a second car, a fifth of it inside the first
                [60, 0, 110, 50],  # 3: four fifths inside the first car
            ],
            np.float32,
        ),
        confidence=np.array([0.6, 0.9, 0.5, 0.4], np.float32),
        class_id=np.array([2, 7, 2, 2], np.int32),
        labels=("car", "truck", "car", "car"),
    )


def test_suppress_contained_drops_a_box_inside_a_more_confident_one_of_any_class() -> None:
    kept = suppress_contained(car_with_parts(), max_inside=0.8)
    assert kept.confidence.tolist() == pytest.approx([0.9, 0.5, 0.4])  # the wheel is gone, the rest sorted
    kept = suppress_contained(car_with_parts(), max_inside=0.7)
    assert kept.confidence.tolist() == pytest.approx([0.9, 0.5])  # 0.8 of the last box lies inside the car


def test_suppress_contained_keeps_a_more_confident_box_inside_a_less_confident_one() -> None:
    detections = car_with_parts()
    boosted = Detections(
        xyxy=detections.xyxy,
        confidence=np.array([0.95, 0.9, 0.5, 0.4], np.float32),  # the wheel now outranks the car
        class_id=detections.class_id,
        labels=detections.labels,
    )
    assert len(suppress_contained(boosted, max_inside=0.8)) == 4


def test_suppress_contained_with_one_keeps_every_box_and_refuses_shares_outside_0_1() -> None:
    assert len(suppress_contained(car_with_parts(), max_inside=1.0)) == 4
    assert len(suppress_contained(Detections.empty(), max_inside=0.5)) == 0
    with pytest.raises(ValueError, match="max_inside"):
        suppress_contained(car_with_parts(), max_inside=1.5)
