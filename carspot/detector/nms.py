"""Score threshold, greedy non-maximum suppression and the suppression of boxes inside others, in numpy.

Plain numpy rather than `cv2.dnn.NMSBoxes`, so region search and any detector can use it without importing
OpenCV, and so the IoU rule (suppress when IoU > threshold, boxes in continuous xyxy pixels) is ours to test.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from carspot.detector.detections import Detections

__all__ = ["box_inside", "box_iou", "non_max_suppression", "suppress", "suppress_contained"]


def _overlaps(
    boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """((A, B) intersection areas, (A,) areas, (B,) areas) of two sets of xyxy boxes."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    intersection = np.clip(right - left, 0.0, None) * np.clip(bottom - top, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return intersection, area_a, area_b


def box_iou(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(A, B) intersection over union of two sets of xyxy boxes; 0 where both boxes are empty."""
    intersection, area_a, area_b = _overlaps(boxes_a, boxes_b)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0.0)


def box_inside(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(A, B) share of each box a's area that lies inside box b; 0 for an empty box a."""
    intersection, area_a, _ = _overlaps(boxes_a, boxes_b)
    area = np.broadcast_to(area_a[:, None], intersection.shape)
    return np.divide(intersection, area, out=np.zeros_like(intersection), where=area > 0.0)


def suppress_contained(detections: Detections, *, max_inside: float) -> Detections:
    """The detections without any box that has more than `max_inside` of its area inside a kept, more confident
    box (of any class), most confident first; `max_inside` 1 keeps every box.

    IoU-based NMS keeps a part inside a whole (a wheel or a door in the car's box, a "car" in a pickup's "truck"
    box): the IoU of a small box with a big one is small. Greedy like `non_max_suppression`, ties keep the earlier.
    """
    if not 0.0 <= max_inside <= 1.0:
        raise ValueError(f"max_inside must lie in [0, 1], got {max_inside}")
    order = np.argsort(-detections.confidence, kind="stable")
    inside = box_inside(detections.xyxy, detections.xyxy)
    keep: list[int] = []
    for index in order.tolist():
        if not keep or inside[index, keep].max() <= max_inside:
            keep.append(index)
    return detections.filter(np.asarray(keep, dtype=np.intp))


def non_max_suppression(
    xyxy: npt.ArrayLike,
    confidence: npt.ArrayLike,
    class_id: npt.ArrayLike | None = None,
    *,
    iou_threshold: float,
    score_threshold: float = 0.0,
    class_agnostic: bool = False,
    max_detections: int | None = None,
) -> npt.NDArray[np.intp]:
    """Indices of the boxes to keep, most confident first.

    Boxes scoring below `score_threshold` are dropped first. A box is suppressed when its IoU with a kept,
    more confident box of the same class (any class if `class_agnostic`) exceeds `iou_threshold`: a car
    behind a truck is a second object, not a duplicate. Ties keep the earlier box, so results are stable.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    if max_detections is not None and max_detections < 0:
        raise ValueError(f"max_detections must be >= 0, got {max_detections}")
    boxes = np.asarray(xyxy, dtype=np.float64)
    scores = np.asarray(confidence, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ValueError(f"need (N, 4) boxes and (N,) scores, got {boxes.shape} and {scores.shape}")
    if not class_agnostic:
        if class_id is None:
            raise ValueError("class_id is required unless class_agnostic=True")
        classes = np.asarray(class_id)
        if classes.shape != scores.shape:
            raise ValueError(f"class_id must have shape {scores.shape}, got {classes.shape}")
        if boxes.size:
            # Shift each class into its own disjoint region, so one IoU pass never mixes classes.
            span = float(boxes.max() - boxes.min()) + 1.0
            boxes = boxes + (classes.astype(np.float64) * span)[:, None]

    candidates = np.flatnonzero(scores >= score_threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    limit = len(order) if max_detections is None else max_detections
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        overlaps = box_iou(boxes[best], boxes[rest])[0]
        order = rest[overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def suppress(
    detections: Detections,
    *,
    iou_threshold: float,
    score_threshold: float = 0.0,
    class_agnostic: bool = False,
    max_detections: int | None = None,
) -> Detections:
    """`non_max_suppression` applied to `Detections`, sorted by confidence, most confident first."""
    keep = non_max_suppression(
        detections.xyxy,
        detections.confidence,
        detections.class_id,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        class_agnostic=class_agnostic,
        max_detections=max_detections,
    )
    return detections.filter(keep)
