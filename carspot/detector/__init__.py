"""Detections type, region proposals and car detectors.

Importing this package never imports OpenCV: `load_yolo_fastest` does, when a model is loaded.
"""

from carspot.detector.detections import CarDetector, Detections
from carspot.detector.errors import (
    DetectorError,
    InvalidImageError,
    ModelFormatError,
    ModelIntegrityError,
    ModelLoadError,
    ModelNotFoundError,
)
from carspot.detector.nms import box_iou, non_max_suppression, suppress
from carspot.detector.yolo_fastest import YOLO_FASTESTV2_SHA256, YoloFastestV2Detector, load_yolo_fastest

__all__ = [
    "YOLO_FASTESTV2_SHA256",
    "CarDetector",
    "Detections",
    "DetectorError",
    "InvalidImageError",
    "ModelFormatError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
    "YoloFastestV2Detector",
    "box_iou",
    "load_yolo_fastest",
    "non_max_suppression",
    "suppress",
]
