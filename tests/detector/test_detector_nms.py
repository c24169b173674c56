"""Class-aware non-maximum suppression and the score threshold."""

from __future__ import annotations

import numpy as np
import pytest

from carspot.detector import Detections, box_iou, non_max_suppression, suppress

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
